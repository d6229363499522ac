version 1.1

task breaks {
  command <<<
    echo "about to fail" >&2
    echo "the reason: disk on fire" >&2
    exit 7
  >>>
  output { String never = read_string(stdout()) }
}

workflow fails {
  call breaks
}
