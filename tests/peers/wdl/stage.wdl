version 1.2

# One task that only takes inputs: Sprocket stages every one of them
# (digest, then upload to <inputs>/file|directory/<hex>) before it submits.

task stage {
  input {
    Array[Directory] dirs = []
    Array[File] files = []
  }

  command <<<
    true
  >>>

  runtime {
    container: "ubuntu:22.04"
  }
}
