"""Learning from a live stream: frame sources at a fixed frame rate and the papers' real-time setting.

* `sources`: a video file or camera replayed in real time (frames that arrive while the learner
  is busy are dropped, as from a live camera), or a video as an array.
* `realtime`: the Sideways paper's blocking simulation (Table 3): per-frame backprop blocks for
  2(D-1) steps per update and drops the frames that arrive meanwhile; Sideways consumes every one.
"""

from sideways_tf.streaming.realtime import blocked_frames, held_predictions, online_errors
from sideways_tf.streaming.sources import RealTimeSource, camera_frames, video_frames

__all__ = ["RealTimeSource", "blocked_frames", "camera_frames", "held_predictions", "online_errors", "video_frames"]
