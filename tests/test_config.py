"""Recipes: every shipped recipe validates, round-trips, and typos fail loudly."""

from pathlib import Path

import pytest

from emoscope.config import RunConfig, load_config
from emoscope.errors import ConfigError

RECIPES = sorted((Path(__file__).parent.parent / "training" / "configs").glob("*.toml"))


def test_there_are_recipes():
    assert {"smoke.toml", "brighter-eng-minilm.toml", "semeval2018-ar-me5.toml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_validates_and_round_trips(path):
    config = load_config(path)
    assert config.name == path.stem
    assert RunConfig.from_dict(config.to_dict()) == config


BASE = {"name": "x", "data": {"train": "brighter:eng:train"}, "encoders": [{"source": "minilm-l6"}]}


def with_(section, **values):
    raw = {**BASE, section: {**BASE.get(section, {}), **values}} if section != "encoders" else \
        {**BASE, "encoders": [{**BASE["encoders"][0], **values}]}
    return raw


@pytest.mark.parametrize("raw, message", [
    (with_("training", lr=-1.0), "training.lr"),
    (with_("training", learning_rate=1e-5), "unknown key(s) learning_rate"),
    (with_("training", batch_size="16"), "training.batch_size: expected int"),
    (with_("encoders", pooling="max"), "encoder.pooling"),
    (with_("loss", name="hinge"), "loss.name"),
    (with_("loss", name="hybrid", temperature=0.0), "loss.temperature"),
    (with_("loss", name="hybrid", contrastive_weight=-1.0), "loss.contrastive_weight"),
    (with_("data", validation="holdout:0.9"), "holdout"),
    (with_("text", remove_diacritcs=True), "remove_diacritcs"),
    ({**BASE, "encoders": []}, "encoders"),
    ({k: v for k, v in BASE.items() if k != "data"}, "[data]"),
])
def test_bad_recipes_name_the_problem(raw, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(raw)
    assert message in str(err.value)


def test_int_accepted_where_float_expected():
    assert RunConfig.from_dict(with_("training", lr=1)).training.lr == 1.0


def test_bad_toml_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_readme_recipe_example_validates(tmp_path):
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert example, "README lost its recipe example"
    path = tmp_path / "example.toml"
    path.write_text(example.group(1), encoding="utf-8")
    config = load_config(path)
    assert config.encoder.source == "me5-small" and config.training.batch_size == 8


def test_a_list_of_train_specs_is_accepted_and_round_trips():
    raw = {**BASE, "data": {"train": ["semeval2018:ar:train", "semeval2018:en:train"], "eval": ["semeval2018:ar:dev"]}}
    config = RunConfig.from_dict(raw)
    assert config.data.train == ("semeval2018:ar:train", "semeval2018:en:train")
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="data.train"):
        RunConfig.from_dict({**BASE, "data": {"train": []}})
    with pytest.raises(ConfigError, match="a list of strings"):
        RunConfig.from_dict({**BASE, "data": {"train": [1, 2]}})


@pytest.mark.parametrize("raw, message", [
    (with_("training", lr=float("inf")), "training.lr: expected a finite number, got inf"),
    (with_("training", weight_decay=float("inf")), "training.weight_decay: expected a finite number"),
    (with_("training", warmup_ratio=float("nan")), "training.warmup_ratio: expected a finite number"),
    (with_("loss", name="focal", gamma=float("inf")), "loss.gamma: expected a finite number"),
    (with_("loss", name="focal", gamma=float("nan")), "loss.gamma: expected a finite number"),
    (with_("encoders", dropout=float("nan")), "dropout: expected a finite number"),
    (with_("training", lr=2.0), "training.lr must be > 0 and at most 1"),
    (with_("training", seed=-1), "training.seed must be a whole number from 0 to 4294967295, got -1"),
    (with_("training", seed=2**32), "got 4294967296"),
    (with_("encoders", seed=2**40), "encoder.seed must be a whole number from 0 to 4294967295"),
    ({**BASE, "stack": {}, "meta": {"dense_size": 10**9}}, "meta.dense_size must be in 0..8192"),
    ({**BASE, "stack": {}, "meta": {"lr": float("inf")}}, "meta.lr: expected a finite number"),
])
def test_values_fatal_later_are_refused_when_the_recipe_is_read(raw, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(raw)
    assert message in str(err.value)


def test_non_finite_numbers_are_refused_in_code_too():
    from emoscope.config import DataConfig, EncoderConfig, LossConfig, MetaConfig, TrainingConfig

    for make, message in [(lambda: TrainingConfig(grad_clip=float("inf")), "training.grad_clip must be a finite number"),
                          (lambda: MetaConfig(weight_decay=float("inf")), "meta.weight_decay must be a finite number"),
                          (lambda: TrainingConfig(seed=2**32), "training.seed"),
                          (lambda: RunConfig(name="x", data=DataConfig(train="a.csv"),
                                             encoders=(EncoderConfig(source="m"),), loss=LossConfig(gamma=float("nan"))),
                           "loss.gamma must be a finite number")]:
        with pytest.raises(ConfigError, match=message):
            make()
    assert TrainingConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_a_folder_given_as_recipe(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give a recipe file"):
        load_config(tmp_path)
    (tmp_path / "r.yaml").write_text("name: x")
    with pytest.raises(ConfigError, match="recipes are .toml or .json files"):
        load_config(tmp_path / "r.yaml")


def test_json_recipes_refuse_nan_too(tmp_path):
    import json

    path = tmp_path / "r.json"
    path.write_text(json.dumps(with_("training", lr=float("nan"))))
    with pytest.raises(ConfigError, match="training.lr: expected a finite number, got nan"):
        load_config(path)
