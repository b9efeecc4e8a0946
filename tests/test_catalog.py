"""The catalogue (`lit/catalog.py`) and the registries that implement its names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit import catalog
from lit.data import DATASETS
from lit.methods import METHODS, Method, register_method
from lit.models import MODELS
from lit.runtime.registry import Registry


@pytest.mark.parametrize("registry", [DATASETS, MODELS, METHODS], ids=lambda r: r.kind)
def test_every_catalogued_name_is_implemented_where_the_catalogue_says(registry):
    for name in registry.names():
        implementation = registry.get(name)
        assert implementation.__module__ == registry.catalog.get(name).module, name


def test_a_method_class_carries_its_catalogue_metadata():
    for name in METHODS.names():
        entry, cls = catalog.METHODS.get(name), METHODS.get(name)
        for key in catalog.MethodEntry.metadata_names():
            assert getattr(cls, key) == getattr(entry, key), (name, key)
    # a spot check of values the engine relies on
    assert METHODS.get("lit").phases == ("lit", "finetune") and METHODS.get("lit").same_family_teacher
    assert METHODS.get("slimming").reshapes_student and not METHODS.get("kd").reshapes_student


def test_registry_refuses_names_the_catalogue_lacks_or_places_elsewhere():
    registry = Registry(catalog.Catalog("widget", [catalog.Entry("known", __name__)]))
    with pytest.raises(ValueError, match="'unknown' is not in lit/catalog.py"):
        registry.register("unknown")(lambda: None)
    elsewhere = catalog.Catalog("widget", [catalog.Entry("known", "lit.somewhere_else")])
    with pytest.raises(ValueError, match="registered from .*lit/catalog.py says lit.somewhere_else"):
        Registry(elsewhere).register("known")(lambda: None)

    def factory():
        return 1

    registry.register("known")(factory)
    assert registry.get("known") is factory
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("known")(factory)
    with pytest.raises(KeyError, match="unknown widget 'nope' \\(known: known\\)"):
        registry.get("nope")


def test_a_catalogued_module_that_does_not_register_its_name_is_named():
    registry = Registry(catalog.Catalog("widget", [catalog.Entry("ghost", "lit.catalog")]))
    with pytest.raises(ValueError, match="widget 'ghost': module lit.catalog does not register it"):
        registry.get("ghost")


def test_method_metadata_is_written_once_in_the_catalogue():
    with pytest.raises(ValueError, match="set 'phases' in its lit/catalog.py entry, not on the class"):
        @register_method("kd")
        class Duplicate(Method):
            phases = ("train",)


def test_registries_import_an_implementation_on_first_use_only():
    code = (
        "import sys\n"
        "from lit.methods import METHODS\n"
        "from lit.models import MODELS\n"
        "assert 'lit.methods.kd' not in sys.modules and 'lit.models.vdcnn' not in sys.modules\n"
        "METHODS.get('kd'); MODELS.get('resnet')\n"
        "assert 'lit.methods.kd' in sys.modules and 'lit.models.resnet' in sys.modules\n"
        "assert 'lit.methods.lit' not in sys.modules and 'lit.models.vdcnn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
