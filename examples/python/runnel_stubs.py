"""Generates the Python gRPC stubs from the repository's proto/ files at run time (into a temp dir that is
removed at exit) with Debian's python3-grpc-tools, and imports them.

Debian bookworm's grpc-tools embeds protoc 3.5, which predates proto3 `optional`. A proto3
`optional T f = N;` is defined as a field inside a one-field "synthetic" oneof named `_f`, with the same
tag and the same bytes on the wire, so the .proto text is rewritten to exactly that before compiling.
Presence works the same way: message.HasField("f")."""
import atexit
import glob
import os
import re
import shutil
import sys
import tempfile
import types

DEFAULT_PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
_OPTIONAL_FIELD = re.compile(r"^(\s*)optional\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", re.MULTILINE)


def rewrite_proto3_optional(text):
    """`optional T f = N;` -> `oneof _f { T f = N; }` (what protoc >= 3.15 does internally)."""
    return _OPTIONAL_FIELD.sub(r"\1oneof _\3 { \2 \3 = \4; }", text)


def generate(proto_dir, out_dir):
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise SystemExit("grpc_tools is missing: apt-get install python3-grpcio python3-grpc-tools, "
                         "and run this with /usr/bin/python3 (%s)" % err)
    src_dir = os.path.join(out_dir, "proto-src")
    files = sorted(glob.glob(os.path.join(proto_dir, "runnel", "v1", "*.proto")))
    if not files:
        raise SystemExit("no .proto files under %s/runnel/v1" % proto_dir)
    rewritten = []
    for path in files:
        target = os.path.join(src_dir, "runnel", "v1", os.path.basename(path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(target, "w", encoding="utf-8") as f:
            f.write(rewrite_proto3_optional(text))
        rewritten.append(target)
    code = protoc.main(["protoc", "-I" + src_dir, "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + rewritten)
    if code != 0:
        raise SystemExit("protoc failed (exit %d) on %s" % (code, proto_dir))


_loaded = None


def load(proto_dir=None):
    """Returns a namespace with records_pb2, errors_pb2, share_pb2, broker_pb2, broker_pb2_grpc,
    controller_pb2 and controller_pb2_grpc. Generated once per process. (Python's generated modules do not
    re-export what they import: ShareFetchRequest and the other share-group messages that broker.proto
    and controller.proto use live in share_pb2 only.)"""
    global _loaded
    if _loaded is not None:
        return _loaded
    proto_dir = os.path.abspath(proto_dir or os.environ.get("RUNNEL_PROTO_DIR") or DEFAULT_PROTO_DIR)
    out_dir = tempfile.mkdtemp(prefix="runnel-py-stubs-")
    atexit.register(shutil.rmtree, out_dir, True)
    generate(proto_dir, out_dir)
    sys.path.insert(0, out_dir)
    from runnel.v1 import broker_pb2, broker_pb2_grpc, controller_pb2, controller_pb2_grpc, errors_pb2, records_pb2, share_pb2
    _loaded = types.SimpleNamespace(
        records_pb2=records_pb2, errors_pb2=errors_pb2, share_pb2=share_pb2, broker_pb2=broker_pb2, broker_pb2_grpc=broker_pb2_grpc,
        controller_pb2=controller_pb2, controller_pb2_grpc=controller_pb2_grpc)
    return _loaded
