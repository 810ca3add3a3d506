#!/usr/bin/env python3
"""A tiny S3 client in the Python standard library (AWS Signature Version 4), independent of
s3proxy, of delta-rs and of every AWS SDK. scripts/s3proxy-local.sh uses it to wait for the
server, to create the bucket and for its self-test.

Settings come from the environment, the variables S3PROXY_DIR/s3.env exports:
FACTORYPAL__STORAGE__ENDPOINT (http://127.0.0.1:PORT), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION.

usage: s3_client.py ready                 exit 0 if an authenticated ListBuckets answers 200
       s3_client.py create-bucket NAME    create NAME (fine if it exists already)
       s3_client.py selftest BUCKET       put/get/list/delete and conditional PUTs, see below
"""

import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

TIMEOUT_S = 10


class S3:
    """Path-style requests to one endpoint, signed with SigV4 (service s3)."""

    def __init__(self, endpoint, key_id, secret, region):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            raise SystemExit(f"s3_client: endpoint must be http://HOST:PORT, not {endpoint!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.key_id, self.secret, self.region = key_id, secret, region

    @classmethod
    def from_env(cls):
        missing = [
            v
            for v in ("FACTORYPAL__STORAGE__ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if not os.environ.get(v)
        ]
        if missing:
            raise SystemExit(f"s3_client: {', '.join(missing)} not set (source S3PROXY_DIR/s3.env)")
        return cls(
            os.environ["FACTORYPAL__STORAGE__ENDPOINT"],
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ.get("AWS_REGION", "us-east-1"),
        )

    def request(self, method, path, query=None, headers=None, body=b""):
        """One signed request; returns (status, lower-cased headers, body bytes)."""
        query = query or {}
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        host = f"{self.host}:{self.port}"
        all_headers = {
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload_hash,
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        canonical_uri = urllib.parse.quote(path, safe="/-_.~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(query.items())
        )
        signed = sorted(all_headers)
        canonical_headers = "".join(f"{k}:{str(all_headers[k]).strip()}\n" for k in signed)
        signed_headers = ";".join(signed)
        canonical_request = "\n".join(
            [method, canonical_uri, canonical_query, canonical_headers, signed_headers, payload_hash]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        key = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        try:
            target = canonical_uri + (f"?{canonical_query}" if canonical_query else "")
            conn.request(method, target, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def keys_of_listing(xml_body):
    """The <Key> values of a ListObjectsV2 answer."""
    root = ET.fromstring(xml_body)
    return [el.text for el in root.iter() if el.tag.endswith("}Key") or el.tag == "Key"]


def expect(what, status, want, body=b""):
    if status != want:
        raise SystemExit(
            f"s3_client selftest: {what}: HTTP {status}, expected {want}: "
            f"{body[:300].decode(errors='replace')}"
        )
    print(f"ok   {what}: HTTP {status}")


def selftest(s3, bucket):
    """Put, get, list, delete; If-None-Match: * refused (412) on an existing key and accepted on a
    new one; and of 8 concurrent conditional PUTs of one new key exactly one wins, the rest get
    412 (the check is atomic, which delta-rs relies on when two writers race for a commit)."""
    prefix = f"selftest-{uuid.uuid4().hex}/"
    key = f"/{bucket}/{prefix}a b+c.json"  # a space and a plus: the path encoding is exercised
    body = b'{"hello": "s3proxy"}\n'

    status, _, resp = s3.request("PUT", key, body=body)
    expect("PUT object", status, 200, resp)
    status, _, resp = s3.request("GET", key)
    expect("GET object", status, 200, resp)
    if resp != body:
        raise SystemExit(f"s3_client selftest: GET returned {resp!r}, expected {body!r}")
    print("ok   GET body equals the PUT body")

    status, _, resp = s3.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": prefix})
    expect("LIST objects (ListObjectsV2)", status, 200, resp)
    listed = keys_of_listing(resp)
    if listed != [f"{prefix}a b+c.json"]:
        raise SystemExit(f"s3_client selftest: LIST returned {listed}, expected the one key")
    print("ok   LIST shows exactly the key written")

    status, _, resp = s3.request("PUT", key, headers={"If-None-Match": "*"}, body=b"overwrite")
    expect("conditional PUT (If-None-Match: *) of an existing key", status, 412, resp)
    status, _, resp = s3.request("GET", key)
    if resp != body:
        raise SystemExit(f"s3_client selftest: the refused PUT changed the object: {resp!r}")
    print("ok   the refused conditional PUT left the object as it was")

    new_key = f"/{bucket}/{prefix}new.json"
    status, _, resp = s3.request("PUT", new_key, headers={"If-None-Match": "*"}, body=b"first")
    expect("conditional PUT (If-None-Match: *) of a new key", status, 200, resp)

    race_key = f"/{bucket}/{prefix}race.json"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda i: s3.request(
                    "PUT", race_key, headers={"If-None-Match": "*"}, body=f"writer {i}".encode()
                )[0],
                range(8),
            )
        )
    if sorted(statuses) != [200] + [412] * 7:
        raise SystemExit(
            f"s3_client selftest: 8 racing conditional PUTs answered {statuses}, expected one 200 "
            "and seven 412 (conditional writes are not atomic on this server)"
        )
    print("ok   8 racing conditional PUTs of one new key: one 200, seven 412")

    for k in (key, new_key, race_key):
        status, _, resp = s3.request("DELETE", k)
        expect(f"DELETE {k}", status, 204, resp)
    status, _, resp = s3.request("GET", key)
    expect("GET of a deleted object", status, 404, resp)
    status, _, resp = s3.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": prefix})
    if keys_of_listing(resp):
        raise SystemExit(f"s3_client selftest: LIST after DELETE still shows {keys_of_listing(resp)}")
    print("ok   LIST after DELETE is empty")
    print("s3_client selftest: all checks passed")


def main(argv):
    if len(argv) < 2 or argv[1] not in ("ready", "create-bucket", "selftest"):
        print(__doc__, file=sys.stderr)
        return 2
    s3 = S3.from_env()
    if argv[1] == "ready":
        try:
            status, _, _ = s3.request("GET", "/")
        except OSError:
            return 1
        return 0 if status == 200 else 1
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "create-bucket":
        status, _, resp = s3.request("PUT", f"/{argv[2]}")
        if status == 200 or (status == 409 and b"BucketAlreadyOwnedByYou" in resp):
            return 0
        print(f"s3_client: creating bucket {argv[2]}: HTTP {status}: {resp[:300]!r}", file=sys.stderr)
        return 1
    selftest(s3, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
