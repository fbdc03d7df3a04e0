"""Progress of a training run as structured events: what training reports, how it is printed or
written, where the run stands, and how long it has left. No torch, no Streamlit.

- ``reporter``: :class:`Reporter` (``emit``, thinned ``tick``), :func:`current`,
  :func:`reporting` (install one for a block; a failure becomes a one-line ``failed`` event),
  :class:`JsonLinesSink`, :func:`read_events`
- ``console``: :class:`ConsoleSink`, the readable lines of ``emoscope train``
- ``state``: :class:`RunState` folded from the events (:func:`fold`), :func:`describe`
- ``eta``: :func:`eta_seconds` from measured throughput × the work the plan has left

The events, one JSON object per line, each with ``event`` and ``t`` (Unix time):

=============  ==============================================================================
``plan``       ``kind`` (``encoder-classifier`` | ``stacked``), ``name``, ``labels``,
               ``texts`` {train, validation, eval}, ``epochs``, ``batch_size``, ``stages``
               (``fine-tune`` [, ``embed``, ``meta``]), ``encoders`` [{name, source,
               fine_tune}], ``folds``, ``models`` (stage-1 fits in order: [{encoder, role,
               texts}]), ``embed`` (stage-2 texts to read per encoder), ``meta_epochs``
               (at most; all members' for a ``meta.ensemble``)
``stage``      ``name`` (``fine-tune`` | ``embed`` | ``meta`` | ``finish``), ``index``, ``of``
``model``      a stage-1 fit starts: ``encoder``, ``role`` (``full`` | ``fold-i``), ``index``,
               ``of``, ``texts``, ``reused`` (finished by an earlier run)
``batch``      thinned per training batch: ``done``, ``total`` (batches of this epoch),
               ``texts`` (trained on so far this epoch), ``seconds`` (since the epoch began)
``epoch``      ``stage`` (``fine-tune`` | ``meta``), ``epoch``, ``epochs``, ``train_loss``,
               ``val_macro_f1``, ``val_f1`` {label: F1}, ``seconds``, ``texts``; a member of a
               meta-learner ensemble adds ``member`` (from 0) and ``members``
``model_done`` ``encoder``, ``role``, ``best_epoch``, ``seconds``
``embed_start`` a stage-2 read: ``encoder``, ``role``, ``split``, ``texts``
``embed``      thinned per batch of texts not in the cache: ``done``, ``total``, ``seconds``
``embedded``   the read's end: ``encoder``, ``role``, ``split``, ``texts``, ``cached``, ``seconds``
``done``       ``bundle``, ``seconds``, ``val_macro_f1``
``failed``     ``reason`` (one line)
=============  ==============================================================================
"""

from emoscope.progress.console import ConsoleSink, plan_line
from emoscope.progress.eta import eta_seconds, format_eta
from emoscope.progress.reporter import (
           Event,
           JsonLinesSink,
           Reporter,
           current,
           one_line,
           read_events,
           reporting,
)
from emoscope.progress.state import RunState, describe, fold, model_title, summary

__all__ = ["ConsoleSink", "Event", "JsonLinesSink", "Reporter", "RunState", "current", "describe", "eta_seconds",
           "fold", "format_eta", "model_title", "one_line", "plan_line", "read_events", "reporting", "summary"]
