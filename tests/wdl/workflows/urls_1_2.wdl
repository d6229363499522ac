version 1.2

task show {
  input {
    File remote
    Directory remote_dir
  }
  command <<<
    set -euo pipefail
    cat "~{remote}"
    find "~{remote_dir}" -type f | sort | xargs cat
  >>>
  output {
    Array[String] lines = read_lines(stdout())
    Int remote_lines = length(read_lines(remote))
  }
}

workflow urls {
  input {
    File remote
    Directory remote_dir
  }
  call show { input: remote = remote, remote_dir = remote_dir }
  output {
    Array[String] lines = show.lines
    Int remote_lines = show.remote_lines
  }
}
