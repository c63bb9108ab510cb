"""Training machinery (docs/method.md §4), one concept per module:

- ``layout``: names of a run's files (snapshot directory, ``stage1/``, checkpoints, config);
- ``settings``: the run's config from the defaults plus the user's settings; resume checks;
- ``checkpoint``: save/restore of weights, optimiser, memory bank and random generators;
- ``sampling``: epoch-seeded samples, the resumable sampler, the batches;
- ``step``: one optimiser step (shared by the training loop and the speed benchmark);
- ``reporting``: progress bar and TensorBoard, each step's losses read one step late;
- ``strip``: the TensorBoard image strip.

Modules are imported directly (``from spml.training.step import training_step``); this
package file imports nothing, so the launchers can ask ``layout`` without loading torch.
"""
