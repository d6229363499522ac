version 1.1

task lines {
  input {
    File src
    String sep_with = ", "
  }
  command <<<
    sort "~{src}" > "sorted ü.txt"
    echo "~{sep(sep_with, read_lines(src))}"
  >>>
  output {
    File sorted = "sorted ü.txt"
    String joined = read_string(stdout())
    Array[String] back = read_lines(sorted)
  }
  runtime { container: "ubuntu:22.04" cpu: 1 memory: "64 MiB" }
}

task again {
  input { File sorted }
  command <<< tac "~{sorted}" >>>
  output { Array[String] reversed = read_lines(stdout()) }
}

workflow strings {
  input { File src }
  call lines { input: src = src }
  call again { input: sorted = lines.sorted }
  output {
    String joined = lines.joined
    Array[String] back = lines.back
    Array[String] reversed = again.reversed
  }
}
