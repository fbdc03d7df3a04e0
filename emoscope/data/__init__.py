"""Emotion datasets: the `Dataset` type, file readers, dataset specs, splitting, and the data a
recipe trains on.

- `dataset`: `Dataset` (texts + multi-hot labels), `combine` (with a label mask), `align_labels`,
  `restrict_labels` (extra training data over a target's labels)
- `tables`: low-level delimited-file reading and its line-numbered `DataError`s
- `readers`: BRIGHTER CSV, SemEval-2018 E-c TSV, GoEmotions TSV, generic `read_table`
- `specs`: spec strings ("brighter:ary:train"), `default_data_root`, `load_dataset`
- `split`: iterative stratified splitting, `split_dataset`, `train_dev`
- `training_data`: `load_training_data` (a recipe's train / validation / eval sets), `data_summary`

Everything public is re-exported here: `from emoscope.data import load_dataset`.
"""

from emoscope.data.dataset import LANGUAGES, Dataset, align_labels, combine, restrict_labels
from emoscope.data.readers import (
    BRIGHTER_LANGUAGES,
    read_brighter,
    read_goemotions,
    read_semeval2018,
    read_table,
)
from emoscope.data.specs import SPLITS, default_data_root, load_dataset
from emoscope.data.split import iterative_stratified_split, split_dataset, train_dev
from emoscope.data.training_data import (
    TrainingData,
    data_summary,
    load_specs,
    load_training_data,
    stratified_subset,
)

__all__ = [
    "BRIGHTER_LANGUAGES",
    "LANGUAGES",
    "SPLITS",
    "Dataset",
    "TrainingData",
    "align_labels",
    "combine",
    "data_summary",
    "default_data_root",
    "iterative_stratified_split",
    "load_dataset",
    "load_specs",
    "load_training_data",
    "read_brighter",
    "read_goemotions",
    "read_semeval2018",
    "read_table",
    "restrict_labels",
    "split_dataset",
    "stratified_subset",
    "train_dev",
]
