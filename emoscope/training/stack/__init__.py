"""The stacked ensemble's training: K base encoders pooled onto shared words, read by a Bi-LSTM meta-learner.

After "Improving Arabic Multi-Label Emotion Classification using Stacked Embeddings and Hybrid
Loss Function" (arXiv 2410.03979). Three stages, one module each:

1. :mod:`~emoscope.training.stack.stage1` fine-tunes each base encoder with ``fine_tune = true``
   (the single-encoder ``fit_classifier``): with ``stack.folds = k``, one model on every training
   text and one per fold on the other folds (out-of-fold stacking); ``folds = 0`` is naive
   stacking. Finished models are kept in a work folder, so an interrupted run resumes.
2. :mod:`~emoscope.training.stack.stage2` reads every text once per encoder: sub-word vectors
   pooled onto the project's shared words, concatenated per word across encoders, cached on disk
   (:mod:`~emoscope.training.stack.embeddings`), every read through the leakage gate
   (:mod:`~emoscope.training.stack.leakage`).
3. :mod:`~emoscope.training.stack.stage3` trains the meta-learner from the cache with the recipe's
   loss, in seconds to minutes.

:mod:`~emoscope.training.stack.pipeline` runs the three and writes the bundle; the model it
holds at prediction time is :class:`emoscope.models.StackedModel`.
"""
