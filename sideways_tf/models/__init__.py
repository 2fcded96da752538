"""The papers' networks, as lists of Sideways units (and the 3D baselines as Keras models)."""

from sideways_tf.models.full_res import full_res
from sideways_tf.models.simple_cnn import encoder_decoder, simple_cnn, small_cnn
from sideways_tf.models.vgg import vgg8, vgg8_num_params, vgg16, wide_vgg8_width
from sideways_tf.models.vgg3d import vgg16_3d

__all__ = ["encoder_decoder", "full_res", "simple_cnn", "small_cnn", "vgg8", "vgg8_num_params", "vgg16", "vgg16_3d",
           "wide_vgg8_width"]
