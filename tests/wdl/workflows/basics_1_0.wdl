version 1.0

task shout {
  input { String word }
  command <<<
    echo "~{word}" | tr a-z A-Z > "shout ~{word}.txt"
    echo "~{word}" >&2
  >>>
  output {
    File loud = glob("shout *.txt")[0]
    String err = read_string(stderr())
  }
}

task join {
  input { Array[File] files }
  command <<<
    set -e
    while read -r f; do cat "$f"; done < ~{write_lines(files)}
  >>>
  output { Array[String] lines = read_lines(stdout()) }
}

workflow basics {
  input { Array[String] words = ["alpha", "beta", "gamma"] }
  scatter (w in words) {
    call shout { input: word = w }
  }
  call join { input: files = shout.loud }
  output {
    Array[String] lines = join.lines
    Array[String] errs = shout.err
    Array[File] loud = shout.loud
  }
}
