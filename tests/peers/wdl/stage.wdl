version 1.2

# One task that only takes inputs: Sprocket stages every one of them
# (digest, then upload to <inputs>/file|directory/<hex>) before it submits.

task stage {
  input {
    Array[Directory] dirs = []
    Array[File] files = []
  }

  # writes nothing: Sprocket declares the work directory a DIRECTORY output,
  # which tesengine serve completes empty (as Funnel does)
  command <<<
    true
  >>>

  runtime {
    container: "ubuntu:22.04"
  }
}
