version 1.2

# One task that only takes inputs: Sprocket stages every one of them
# (digest, then upload to <inputs>/file|directory/<hex>) before it submits.

task stage {
  input {
    Array[Directory] dirs = []
    Array[File] files = []
  }

  # one file in the work directory: Sprocket declares the work directory a
  # DIRECTORY output, and tesengine serve fails an output that holds no file
  command <<<
    echo staged > staged.txt
  >>>

  runtime {
    container: "ubuntu:22.04"
  }
}
