"""NVIDIA Triton Inference Server: a bundle as a Triton model repository (docs/triton.md).

``repository.export_repository`` writes it (``jetgen triton``), ``config`` builds each model's
``config.pbtxt``, ``python_model`` is the Python-backend model copied into it, ``local`` runs the
registry wheel's ``tritonserver`` on this machine (tests, benchmarks) and ``load`` sends bounded
concurrent requests through ``tritonclient``.
"""
