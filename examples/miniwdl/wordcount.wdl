version 1.1

# Split a text into chunks, count the words of each chunk in parallel, then
# add the counts up: a scatter/gather whose chunk files pass from task to task
# as URLs on the TES side (nothing is uploaded twice).

task split {
  input {
    File text
    Int lines_per_chunk = 2
  }
  command <<<
    set -euo pipefail
    mkdir chunks
    split -l ~{lines_per_chunk} -d "~{text}" chunks/part-
  >>>
  output { Array[File] chunks = glob("chunks/part-*") }
  runtime { docker: "ubuntu:24.04" cpu: 1 memory: "256 MiB" }
}

task count {
  input { File chunk }
  command <<<
    wc -w < "~{chunk}"
  >>>
  output { Int words = read_int(stdout()) }
  runtime { docker: "ubuntu:24.04" cpu: 1 memory: "128 MiB" preemptible: 2 }
}

task total {
  input { Array[Int] counts }
  command <<<
    awk '{ s += $1 } END { print s }' "~{write_lines(counts)}"
  >>>
  output { Int words = read_int(stdout()) }
  runtime { docker: "ubuntu:24.04" }
}

workflow wordcount {
  input { File text }
  call split { input: text = text }
  scatter (chunk in split.chunks) {
    call count { input: chunk = chunk }
  }
  call total { input: counts = count.words }
  output {
    Array[Int] per_chunk = count.words
    Int words = total.words
  }
}
