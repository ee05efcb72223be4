"""Data: dataset readers, coarse-mask degradation and the demo data set generator.

Import from the submodules (``segrefiner.data.degrade``, ``segrefiner.data.coco``, ...).
"""
