"""The intake's configuration: the example files load, and mistakes name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.cap import CapConfigError, load_areas, load_settings
from tests.unit.controlplane.test_cap_trust import make_signer

CONFIG = Path(__file__).resolve().parents[3] / "config"


def test_the_example_configuration_loads() -> None:
    settings = load_settings(CONFIG / "cap.example.toml")
    assert [s.sender for s in settings.senders] == ["canhbao@kttv.gov.vn"]
    assert [g.id for g in settings.areas.groups] == ["q10-p12", "q10-p13", "q10-lab"]
    assert settings.areas.groups[0].locations[1] == (10.7712, 106.6627)
    assert settings.repeat_every_s == 900 and settings.max_document_bytes == 1048576


def test_certificates_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "feed.pem").write_text(make_signer("feed").cert_pem, encoding="ascii")
    (tmp_path / "control.toml").write_text(
        '[cap]\n[[cap.senders]]\nsender = "canhbao@kttv.gov.vn"\nmust_sign = true\n'
        'certificates = ["feed.pem"]\n',
        encoding="utf-8",
    )
    (policy,) = load_settings(tmp_path / "control.toml").senders
    assert policy.must_sign and policy.certificates[0].startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[cap]\nrepeat_every_s = 5\n", "cap.repeat_every_s: Input should be greater than"),
        ("[cap]\nrepeat_evry_s = 600\n", "cap.repeat_evry_s: Extra inputs are not permitted"),
        ('[cap]\n[[cap.senders]]\nsender = "a b"\n', "cap.senders.0.sender"),
        ('[cap]\n[[cap.senders]]\nsender = "x"\nmust_sign = true\n', "needs at least one"),
        (
            '[cap]\n[[cap.senders]]\nsender = "x"\ncertificates = ["missing.pem"]\n',
            "cannot read missing.pem",
        ),
        ("[other]\n", "no [cap] section"),
        ("[cap\n", "not TOML"),
    ],
)
def test_a_mistake_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "control.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CapConfigError, match=r"control\.toml: ") as caught:
        load_settings(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[groups]]\nid = "Q10"\nname = "x"\n', "groups.0.id"),
        ('[[groups]]\nid = "q10"\nname = "x"\nlocations = [[91.0, 0.0]]\n', "groups.0.locations"),
        (
            '[[groups]]\nid = "q10"\nname = "a"\n[[groups]]\nid = "q10"\nname = "b"\n',
            "group ids must be unique",
        ),
    ],
)
def test_a_bad_area_map_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "areas.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CapConfigError, match=r"areas\.toml: ") as caught:
        load_areas(path)
    assert fragment in str(caught.value)


def test_the_ledger_and_media_folder_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "control.toml").write_text(
        '[cap]\nledger = "state/cap.sqlite"\nmedia_dir = "/srv/media"\n'
        'media_url = "https://media.q10.example.vn/cap/"\n',
        encoding="utf-8",
    )
    settings = load_settings(tmp_path / "control.toml")
    assert settings.ledger == tmp_path / "state" / "cap.sqlite"
    assert settings.media_dir == Path("/srv/media")


def test_a_media_folder_needs_its_url(tmp_path: Path) -> None:
    (tmp_path / "control.toml").write_text('[cap]\nmedia_dir = "media"\n', encoding="utf-8")
    with pytest.raises(CapConfigError, match="media_dir and media_url go together"):
        load_settings(tmp_path / "control.toml")
