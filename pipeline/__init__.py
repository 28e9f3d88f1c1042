"""Spreadsheet-triggered batch pipeline for rodent electrophysiology.

A row in a sheet becomes a converted recording (LFP), spectrograms, sleep states,
figures and a report, published per animal and recording.
"""

__version__ = "0.1.0"
