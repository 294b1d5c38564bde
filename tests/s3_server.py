"""A real S3-compatible server for the tests: moto's standalone server on a free local
port, with authentication on, so that wrong credentials are refused as a real store
refuses them. Its first three requests are let through unsigned: they create the user,
its policy and its keys, the only credentials the server then accepts.

Run as a script it serves one command (`make bench-s3`): it starts the server, copies a
prepared data directory into a bucket, runs the command with the store's variables set
and stops the server:

    python tests/s3_server.py data/digits s3://bench/digits -- python jobs/bench.py --data s3://bench/digits
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

UNSIGNED_SETUP_REQUESTS = 3  # create_user, put_user_policy, create_access_key


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str

    @property
    def env(self) -> dict[str, str]:
        """What a user sets to reach this store: the standard variables, nothing else."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def create_bucket(self, name: str) -> None:
        self._client("s3").create_bucket(Bucket=name)

    def _client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def upload(self, local: Path, uri: str) -> int:
        """Copy a directory's files under `uri` (s3://bucket/prefix, the bucket made here);
        returns how many."""
        import pyarrow.fs as pafs

        from alexnet.store import ObjectPath

        self.create_bucket(uri.split("://", 1)[1].split("/", 1)[0])
        fs = pafs.S3FileSystem(access_key=self.access_key, secret_key=self.secret_key, region="us-east-1",
                               endpoint_override=self.endpoint)  # this server's, whatever the environment says
        files = [p for p in sorted(local.rglob("*")) if p.is_file() and not p.name.startswith(".lock")]
        for p in files:
            (ObjectPath(uri, fs) / p.relative_to(local).as_posix()).write_bytes(p.read_bytes())
        return len(files)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server(log: Path) -> S3Server:
    import boto3

    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNSIGNED_SETUP_REQUESTS)}
    with open(log, "w") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="tests")
    iam.put_user_policy(UserName="tests", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="tests")["AccessKey"]
    return S3Server(proc, endpoint, key["AccessKeyId"], key["SecretAccessKey"])


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 2:
        print("usage: python tests/s3_server.py LOCAL_DIR s3://BUCKET/PREFIX -- COMMAND ...", file=sys.stderr)
        return 2
    local, uri, command = Path(argv[0]), argv[1], argv[3:]
    if not (local / "manifest.json").is_file():
        print(f"{local}: not a prepared data directory (no manifest.json); run `make data` first", file=sys.stderr)
        return 2
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{os.getpid()}.log"
    server = start_s3_server(log)
    try:
        os.environ.update(server.env)  # before anything reads them, as pyarrow does
        print(f"[s3] moto server at {server.endpoint}: {server.upload(local, uri)} files of {local} in {uri}",
              flush=True)
        return subprocess.run(command, env={**os.environ, **server.env}).returncode
    finally:
        server.stop()
        log.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
