"""`alexnet.store` against a real S3-compatible server (moto's, on a local port): the
Path-like object paths the jobs read and write through, and the one-line refusals of
a missing bucket, refused credentials and an endpoint that does not answer."""

import json
from pathlib import Path

import pytest
from s3_server import free_port

from alexnet.data import manifest as mf
from alexnet.errors import UserError
from alexnet.store import (
    SUBMITTED_JOB_CONFIG,
    ObjectPath,
    check_reachable,
    open_location,
    read_parquet,
    remove_tree,
    worker_env,
    write_atomic,
)


@pytest.fixture
def bucket(s3_server, s3_env, tmp_path: Path) -> ObjectPath:
    s3_server.create_bucket("store-tests")
    return ObjectPath(f"s3://store-tests/{tmp_path.name}")  # each test a prefix of its own


def test_an_object_path_reads_writes_lists_and_removes_like_a_directory(bucket: ObjectPath) -> None:
    assert not bucket.exists() and not bucket.is_dir()
    write_atomic(bucket / "a.json", '{"x": 1}')
    (bucket / "sub" / "b.parquet").write_bytes(b"12")
    (bucket / "sub" / "c.txt").write_text("c")
    assert bucket.is_dir() and (bucket / "a.json").is_file() and not (bucket / "sub").is_file()
    assert json.loads((bucket / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in bucket.iterdir()] == ["a.json", "sub"]
    assert [str(p) for p in (bucket / "sub").glob("*.parquet")] == [f"{bucket}/sub/b.parquet"]
    assert str((bucket / "sub" / "c.txt").relative_to(bucket)) == "sub/c.txt"
    (bucket / "a.json").unlink()
    (bucket / "a.json").unlink(missing_ok=True)
    remove_tree(bucket / "sub")
    assert list(bucket.iterdir()) == [] and not (bucket / "sub").exists()


def test_locations_are_local_paths_or_object_paths(tmp_path: Path, s3_env) -> None:
    assert open_location(str(tmp_path)) == tmp_path == open_location(f"file://{tmp_path}")
    assert str(open_location("s3://store-tests/x/")) == "s3://store-tests/x"
    with pytest.raises(UserError, match=r"^--data s3://: name a bucket"):
        open_location("s3://")
    with pytest.raises(UserError, match=r"^--storage s3://b/x\?endpoint_override=localhost:9000: options in the URI "
                                        r"are not supported; set .*AWS_ENDPOINT_URL"):
        open_location("s3://b/x?endpoint_override=localhost:9000", "--storage")
    with pytest.raises(UserError, match=r"^--data: credentials in the URI are refused") as refused:
        open_location("s3://AKIAKEY:secret@bucket/x")
    assert "secret" not in str(refused.value)  # never repeated, not even in the refusal
    with pytest.raises(UserError, match=r"^--data hdfs://host:9000/x: hdfs:// is not a store this project reads"):
        open_location("hdfs://host:9000/x")


def test_a_prefix_with_nothing_prepared_is_named(bucket: ObjectPath) -> None:
    with pytest.raises(UserError, match=rf"^--data {bucket}: directory not found; run `python "
                                        r"jobs/prepare_data.py"):
        mf.load(bucket)
    (bucket / "notes.txt").write_text("not prepared")
    with pytest.raises(UserError, match=rf"^--data {bucket}: no manifest.json, so it is not prepared"):
        mf.load(bucket)


def test_a_writable_prefix_is_probed_and_left_as_it_was(bucket: ObjectPath) -> None:
    check_reachable(bucket, "--storage", write=True)
    assert [p.name for p in bucket.iterdir()] == []  # the probe object was written, then deleted


def test_shards_in_the_store_read_as_one_table(bucket: ObjectPath, tiny_data: Path) -> None:
    manifest, _ = mf.load(tiny_data)
    for shard in manifest.splits["val"].shards:
        (bucket / shard).write_bytes((tiny_data / shard).read_bytes())
    table = read_parquet(manifest.shard_paths(bucket, "val"), columns=["index"])
    assert sorted(table.column("index").to_pylist()) == list(range(manifest.splits["val"].images))


@pytest.mark.parametrize("region", ["us-east-1", None])  # without one, the client asks the store for the bucket's
def test_a_missing_bucket_is_named(s3_env, region: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if region is None:
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(UserError, match=r"^--data s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist at "
                                        r"http://127\.0\.0\.1:\d+; create it or correct the name$"):
        check_reachable(ObjectPath("s3://no-such-bucket/x"), "--data")


def test_wrong_and_missing_credentials_are_named(bucket: ObjectPath, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(UserError, match=rf"^--storage {bucket}: the store refused the credentials "
                                        r"\(wrong, or not allowed to read and write it\): check AWS_ACCESS_KEY_ID"):
        check_reachable(ObjectPath(str(bucket)), "--storage", write=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
    with pytest.raises(UserError, match="refused the credentials"):
        check_reachable(ObjectPath(str(bucket)), "--storage")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/credentials either
    with pytest.raises(UserError, match=rf"^--data {bucket}: the store (refused the request|did not "
                                        r"answer as expected).*no credentials are set \(AWS_ACCESS_KEY_ID, "):
        check_reachable(ObjectPath(str(bucket)), "--data")


def test_an_endpoint_that_does_not_answer_is_named(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match=r"^--out s3://store-tests/x: the endpoint at http://127\.0\.0\.1:\d+ does "
                                        r"not answer; check AWS_ENDPOINT_URL"):
        check_reachable(ObjectPath("s3://store-tests/x"), "--out")


def test_workers_get_the_stores_variables_a_submitted_job_does_not_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://store:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("HOME_SECRET", "not a store variable")
    monkeypatch.delenv(SUBMITTED_JOB_CONFIG, raising=False)
    assert worker_env() == {"AWS_ENDPOINT_URL": "http://store:9000", "AWS_ACCESS_KEY_ID": "key",
                            "AWS_SECRET_ACCESS_KEY": "secret"}
    # `ray job submit --runtime-env-json` put the keys there already: Ray refuses them twice
    monkeypatch.setenv(SUBMITTED_JOB_CONFIG, json.dumps({"runtime_env": {"env_vars": {
        "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}}}))
    assert worker_env() == {"AWS_ENDPOINT_URL": "http://store:9000"}
