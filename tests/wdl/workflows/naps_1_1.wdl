version 1.1

task nap {
  input { Int i }
  command <<<
    echo "napping ~{i}"
    sleep 300
  >>>
  output { String done = read_string(stdout()) }
}

workflow naps {
  scatter (i in [1, 2]) {
    call nap { input: i = i }
  }
}
