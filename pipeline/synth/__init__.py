"""Synthetic Neuralynx recordings with known sleep states: the start of the data flow in the tests,
the demo and benchmarks. The converter reads their CSC*.ncs files and channel_map.yaml like real
data; their ground truth (hypnogram, dead/noisy channels, gains) is what results are checked against.
write_synthetic_edf writes the same animal as a few-channel EEG/EMG file at a low rate.
"""

from pipeline.synth.edf import write_synthetic_edf
from pipeline.synth.layout import default_layout
from pipeline.synth.recording import write_synthetic_recording

__all__ = ["default_layout", "write_synthetic_edf", "write_synthetic_recording"]
