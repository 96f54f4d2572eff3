"""Optional array backends: the LM iteration's kernels on JAX, one code for the CPU and the GPU.

Nothing here is imported by ``import mixslam``: the modules import JAX when they are imported themselves
(:mod:`.jax_device` raises :class:`~.jax_device.BackendError` with the install line when it is absent).
``pip install "mixslam[jax]"`` adds it (the CPU wheel; the GPU needs jax's CUDA wheel).

Modules, bottom up:

* :mod:`.jax_device`: JAX itself, fp64 enabled, the device choice (``"cpu"``, ``"gpu"``, None = GPU when
  visible), :class:`~.jax_device.BackendError`.
* :mod:`.jax_residuals`: whitened residuals and Jacobian blocks of SE(2)/SE(3) between edges and of BAL /
  pinhole reprojections in the residual precision, the fp64 costs (same conventions as
  :mod:`mixslam.problem.between` and :mod:`mixslam.problem.reprojection`).
* :mod:`.jax_storage`: the column scaling and the quantized Jacobian (fp64 / fp32 / fp16 / bf16) with the
  counts of :func:`mixslam.storage.quantize`.
* :mod:`.jax_products`: block-sparse J·x, Jᵀ·y, fused JᵀJ·p and block-Jacobi.
* :mod:`.jax_cgnr`: preconditioned CG on the normal equations (``lax.while_loop`` under ``jit``) and the
  damped step of one linearization (:func:`~.jax_cgnr.cgnr_step`, the CPU's ``CGSolver.solve``).
* :mod:`.jax_lm`: the whole LM iteration on the device (linearization, step, retraction, trial cost),
  its decisions on the host (:class:`mixslam.solve.lm_control.LMControl`, the machine the CPU loop drives).
* :mod:`.jax_solve`: the drivers' solve sequence with it (``backend="jax"``).
* :mod:`.jax_batch`: :func:`~.jax_batch.solve_batch`, many same-shaped problems under ``jax.vmap``.
* :mod:`.jax_triangular`: the supernodal factor's triangular solves, level-scheduled
  (:func:`~.jax_triangular.level_schedule`, :class:`~.jax_triangular.DeviceTriangular`).

:mod:`.choice` (no JAX import) checks the configurations' ``backend`` and ``device`` fields.
"""
