"""The command-line tools, one module each, all on absl flags (`common`: their `--help` and error line).

| command | module |
|---|---|
| `sideways-train` | `train`: one experiment of the papers (or `--list` them) |
| `sideways-quickstart` | `quickstart`: Sideways against Skip-Sideways on motion labels, on a CPU |
| `sideways-stream` | `stream`: online learning from a video replayed in real time, or a camera |
| `sideways-reproduce` | `reproduce`: the papers' claims in miniature, with verdicts |

Each also runs as `python -m sideways_tf.cli.<module>`. The console scripts start in
`sideways_tf_cli` (outside the package), which imports TensorFlow quietly first.
"""
