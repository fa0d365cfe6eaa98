"""Reading config files: directories, ConfigMap mounts, multi-document files, YAML errors, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policy.config import config_fingerprint, load_config, parse_config
from policy.config.documents import config_files, read_documents
from policy.config.shape import Reporter
from policy.sdk import ConfigError

HANDLER = """
handlers:
  - {name: %s, adapter: testlist}
"""


def test_directory_files_are_sorted_and_hidden_entries_skipped(tmp_path, write):
    write("rules: []", "b.yaml")
    write("{}", "a.yml")
    write("{}", "c.json")
    write("not config", "notes.txt")
    write("{}", ".hidden.yaml")
    write("{}", "sub/d.yaml")
    write("{}", ".git/e.yaml")
    names = [p.relative_to(tmp_path).as_posix() for p in config_files(tmp_path)]
    assert names == ["a.yml", "b.yaml", "c.json", "sub/d.yaml"]


def test_configmap_mount_reads_each_file_once_through_its_symlink(tmp_path, write, host):
    mount = _configmap(tmp_path, "..2024_05_01_10_00_00.1", {"policy.yaml": HANDLER % "one"})
    assert config_files(mount) == [mount / "policy.yaml"]
    model = parse_config(mount, host)
    assert model.sources == [str(mount / "policy.yaml")]
    assert list(model.handlers) == ["one"]
    # Messages name the file as mounted, not the timestamped directory.
    assert model.handlers["one"].where.file == str(mount / "policy.yaml")


def test_fingerprint_changes_when_configmap_symlink_is_swapped(tmp_path, host):
    mount = _configmap(tmp_path, "..2024_05_01_10_00_00.1", {"policy.yaml": HANDLER % "one"})
    before = config_fingerprint(mount)
    assert before == config_fingerprint(mount)
    assert before[0][0] == str((mount / "..2024_05_01_10_00_00.1" / "policy.yaml").resolve())
    # The kubelet writes a new timestamped directory and swaps ..data atomically.
    new = mount / "..2024_05_01_10_05_00.2"
    new.mkdir()
    (new / "policy.yaml").write_text(HANDLER % "two")
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(new.name)
    os.replace(tmp_link, mount / "..data")
    after = config_fingerprint(mount)
    assert after != before
    assert list(parse_config(mount, host).handlers) == ["two"]


def test_fingerprint_changes_on_edit_add_and_remove(tmp_path, write):
    first = write("{}", "a.yaml")
    base = config_fingerprint(tmp_path)
    assert base == ((str(first.resolve()), first.stat().st_mtime_ns, 2),)
    write("{}\n# more", "a.yaml")
    edited = config_fingerprint(tmp_path)
    assert edited != base
    second = write("{}", "b.yaml")
    assert len(config_fingerprint(tmp_path)) == 2
    second.unlink()
    assert len(config_fingerprint(tmp_path)) == 1


def test_fingerprint_of_missing_path_does_not_raise(tmp_path):
    missing = tmp_path / "nope"
    assert config_fingerprint(missing) == ((str(missing), None, None),)


def test_missing_path_is_a_config_error(tmp_path, host):
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path / "nope.yaml", host)
    (issue,) = info.value.issues
    assert issue.file == str(tmp_path / "nope.yaml")
    assert "no such file or directory" in issue.message


def test_yaml_syntax_error_names_file_and_line(write, host):
    path = write("""
        handlers:
          - name: a
            adapter: testlist
          - name: [b
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    (issue,) = info.value.issues
    assert issue.file == str(path)
    assert issue.document.startswith("line 5")
    assert issue.message.startswith("YAML syntax error")
    assert "line 5" in issue.message


def test_yaml_error_does_not_hide_errors_in_other_files(tmp_path, write, host):
    write("a: [", "a.yaml")
    write("handlers: [{name: x, adapter: nosuch}]", "b.yaml")
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path, host)
    assert [Path(i.file).name for i in info.value.issues] == ["a.yaml", "b.yaml"]


def test_multi_document_files_skip_empty_documents_and_count_lines(write):
    path = write("""
        ---
        ---
        # only a comment
        ---
        handlers: []
        ---
        apiVersion: v1
        kind: List
        items:
          - {apiVersion: x/v1, kind: A}
          - {apiVersion: x/v1, kind: B}
    """)
    reporter = Reporter()
    documents, sources = read_documents(path, reporter)
    assert not reporter.errors
    assert sources == [str(path)]
    assert [(d.index, d.line, d.item) for d in documents] == [(2, 5, None), (3, 7, 0), (3, 7, 1)]
    assert documents[1].label == "document[3].items[0] (line 7)"


def test_kind_list_items_are_loaded(write, host):
    path = write("""
        apiVersion: v1
        kind: List
        items:
          - apiVersion: config.istio.io/v1alpha2
            kind: handler
            metadata: {name: h, namespace: istio-system}
            spec: {compiledAdapter: testlist}
    """)
    assert list(parse_config(path, host).handlers) == ["h.istio-system"]


def test_json_file_is_read(write, host):
    path = write('{"handlers": [{"name": "j", "adapter": "testlist"}]}', "policy.json")
    assert list(parse_config(path, host).handlers) == ["j"]


def test_non_mapping_document_is_an_error(write, host):
    path = write("- just\n- a list\n")
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    (issue,) = info.value.issues
    assert issue.document == "document[0] (line 1)"
    assert "expected a mapping" in issue.message


def test_empty_directory_loads_an_empty_snapshot(tmp_path, host):
    snapshot = load_config(tmp_path, host)
    assert snapshot.rules == [] and snapshot.sources == ()


def _configmap(root: Path, stamp: str, files: dict[str, str]) -> Path:
    """Lay out a directory as the kubelet mounts a ConfigMap."""
    mount = root / "mount"
    data = mount / stamp
    data.mkdir(parents=True)
    for name, text in files.items():
        (data / name).write_text(text)
    (mount / "..data").symlink_to(stamp)
    for name in files:
        (mount / name).symlink_to(Path("..data") / name)
    return mount
