import pytest

from recsys_core.config import EXPERIMENTS, apply_overrides, experiment, from_dict


def test_overrides_are_typed():
    config = apply_overrides(
        experiment("ml100k"),
        ["retrieval.epochs=3", "retrieval.tower_layers=128,64", "retrieval.use_item_features=false", "ranking.l2=1e-3"],
    )
    assert config.retrieval.epochs == 3
    assert config.retrieval.tower_layers == (128, 64)
    assert config.retrieval.use_item_features is False
    assert config.ranking.l2 == 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("retrieval.epochz=3", "unknown key 'epochz'"),
        ("retreival.epochs=3", "'retreival' is not a config section"),
        ("retrieval.epochs=three", "'three' is not a valid int"),
        ("retrieval.use_item_features=maybe", "not a valid bool"),
        ("retrieval.epochs", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_value(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(experiment("ml100k"), [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.strategy=gpu", "training.strategy='gpu'"),
        ("training.models=retrieval,svd", "training.models='svd'"),
        ("data.source=csv", "data.source='csv'"),
        ("ranking.epochs=0", "ranking: epochs"),
        ("retrieval.tower_layers=", "retrieval.tower_layers"),
        ("training.precision=float16", "training.precision='float16' is not one of: float32, mixed_float16"),
    ],
)
def test_validation_rejects_bad_values(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(experiment("ml100k"), [override]).validate()


def test_every_experiment_is_valid_and_round_trips():
    for name in EXPERIMENTS:
        config = experiment(name).validate()
        assert from_dict(config.to_dict()) == config


def test_unknown_experiment():
    with pytest.raises(ValueError, match="unknown experiment 'ml20m'"):
        experiment("ml20m")
