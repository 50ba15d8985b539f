"""Experiments beyond a single run: paper 001's real-world comparison of sparse meshes with
small MLPs on Fashion-MNIST (CAE features) and MNIST-1D.

- :mod:`.models`: the configurations (mnn-85, mnn-80, mlp-13, mlp-17) and their networks;
- :mod:`.compare`: several configurations over several seeds, results.json, the table;
- :mod:`.fashion`: the Fashion-MNIST protocol (IDX files, CAE features, the verdicts).
"""
