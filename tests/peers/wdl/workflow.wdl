version 1.2

# File and Directory inputs, a scatter, and outputs read by later tasks:
# what tests/peers/test_sprocket.py runs through Sprocket's TES backend.

task inspect {
  input {
    File f
    Directory d
  }

  command <<<
    wc -c < '~{f}' | tr -d ' ' > size.txt
    (cd '~{d}' && find . -type f | LC_ALL=C sort) > listing.txt
  >>>

  output {
    File size = "size.txt"
    File listing = "listing.txt"
  }

  runtime {
    container: "ubuntu:22.04"
  }
}

task shout {
  input {
    String word
    File size
  }

  command <<<
    echo "~{word} $(cat '~{size}')" > out.txt
  >>>

  output {
    File out = "out.txt"
  }

  runtime {
    container: "ubuntu:22.04"
  }
}

task gather {
  input {
    Array[File] parts
  }

  command <<<
    cat ~{sep(" ", parts)} > all.txt
  >>>

  output {
    File all = "all.txt"
  }

  runtime {
    container: "ubuntu:22.04"
  }
}

workflow wf {
  input {
    File f
    Directory d
    Array[String] words
  }

  call inspect { input: f = f, d = d }

  scatter (w in words) {
    call shout { input: word = w, size = inspect.size }
  }

  call gather { input: parts = shout.out }

  output {
    File all = gather.all
    File listing = inspect.listing
  }
}
