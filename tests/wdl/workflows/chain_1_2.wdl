version 1.2

# Directory and File outputs chained into later tasks, scatter/gather, globs,
# read_lines/write_lines, names with spaces and non-ASCII characters.

task make {
  input {
    File raw
    Int parts = 3
  }
  command <<<
    set -euo pipefail
    mkdir "out dir"
    for i in $(seq 1 ~{parts}); do
      printf 'part %s of %s\n' "$i" "$(basename "~{raw}")" > "out dir/part $i é.txt"
    done
    { cat "~{raw}"; echo "copied"; } > "copy é.txt"
    ls "out dir" | sort
  >>>
  output {
    Directory d = "out dir"
    File copy = "copy é.txt"
    Array[File] parts_glob = glob("out dir/*.txt")
    Array[String] names = read_lines(stdout())
  }
}

task count {
  input { File part }
  command <<<
    wc -c < "~{part}"
  >>>
  output { Int n = read_int(stdout()) }
}

task total {
  input { Array[Int] ns }
  command <<<
    awk '{ s += $1 } END { print s }' "~{write_lines(ns)}"
  >>>
  output { Int sum = read_int(stdout()) }
}

task consume {
  input {
    Directory d
    File copy
  }
  command <<<
    set -euo pipefail
    ls "~{d}" | sort
    cat "~{copy}"
    cat "~{d}/part 1 é.txt"
  >>>
  output { Array[String] lines = read_lines(stdout()) }
}

workflow chain {
  input { File raw }
  call make { input: raw = raw }
  scatter (part in make.parts_glob) {
    call count { input: part = part }
  }
  call total { input: ns = count.n }
  call consume { input: d = make.d, copy = make.copy }
  output {
    Array[String] names = make.names
    Array[Int] sizes = count.n
    Int sum = total.sum
    Array[String] consumed = consume.lines
    Directory d = make.d
    File copy = make.copy
  }
}
