"""Installs sideways_tf: `pip install .` (add `.[test]` for the test tools)."""

from setuptools import find_packages, setup

setup(
    name="sideways_tf",
    version="0.1.0",
    description="Depth-parallel training of video models with Sideways and Skip-Sideways (TF2 / Keras 3).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sideways_tf", "sideways_tf.*"]),
    py_modules=["sideways_tf_cli"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.10.0",  # the oldest release tested (.ci/run); keras.remat and StatelessScope
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tfds needs it to prepare builders of its own (undeclared upstream)
        "numpy",
        "absl-py",
        "tensorboard",
    ],
    extras_require={
        "video": ["av>=12"],
        "plots": ["matplotlib"],
        "camera": ["opencv-python-headless"],
        "jax": ["jax>=0.4.34"],
        "notebooks": ["nbclient", "nbformat", "ipykernel", "matplotlib"],
        "test": ["pytest>=7", "pytest-xdist>=3", "ruff", "av>=12", "scikit-video", "jax>=0.4.34", "matplotlib",
                 "nbclient", "nbformat", "ipykernel"],
    },
    entry_points={
        "console_scripts": [
            "sideways-train=sideways_tf_cli:train",
            "sideways-quickstart=sideways_tf_cli:quickstart",
            "sideways-stream=sideways_tf_cli:stream",
            "sideways-reproduce=sideways_tf_cli:reproduce",
        ],
    },
    license="Apache-2.0",
)
