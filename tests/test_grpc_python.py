#!/usr/bin/env python3
"""A Python grpcio client built from proto/ alone (modules made by protoc --python_out, calls
made with grpcio's generic unary_stream/unary_unary) against `baton serve` on loopback:
Health says SERVING, greedy Generate equals `baton run`, Info and a bad request answer.

usage: test_grpc_python.py PYTHON_PROTO_DIR   (BATON_BIN and BATON_TMP from the environment)
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from baton.v1 import inference_pb2  # noqa: E402
import health_pb2  # noqa: E402  (grpc.health.v1)

BIN = os.environ["BATON_BIN"]
TMP = os.environ.get("BATON_TMP", "/tmp")
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("check failed:", what, file=sys.stderr)


def main():
    model = os.path.join(TMP, "%d-py-model.pth" % os.getpid())
    subprocess.run([BIN, "synth", "--layers", "2", "--embd", "32", "--vocab", "256",
                    "--dtype", "fp32", "--seed", "5", "-o", model],
                   check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--model", model],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        prefix = "baton serve: listening on "
        assert line.startswith(prefix), line
        addr = line[len(prefix):].strip()
        channel = grpc.insecure_channel(addr)

        health = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:  # polling with a bound, not synchronizing by sleep
            try:
                status = health(health_pb2.HealthCheckRequest(), timeout=1).status
            except grpc.RpcError:
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.02)
        check(status == health_pb2.HealthCheckResponse.SERVING, "health SERVING")

        generate = channel.unary_stream(
            "/baton.v1.Inference/Generate",
            request_serializer=inference_pb2.GenerateRequest.SerializeToString,
            response_deserializer=inference_pb2.GenerateResponse.FromString)
        req = inference_pb2.GenerateRequest(prompt="Hello from Python", max_tokens=50)
        req.sampling.temperature = 0.0  # set explicitly: presence matters
        text, ids, finish = "", [], None
        for msg in generate(req, timeout=60):
            text += msg.text
            ids.extend(msg.token_ids)
            if msg.HasField("finish"):
                finish = msg.finish
        expected = subprocess.run(
            [BIN, "run", "--model", model, "--tokenizer", "bytes", "--prompt", "Hello from Python",
             "--temperature", "0", "--max-tokens", "50"],
            check=True, stdout=subprocess.PIPE).stdout.decode("utf-8")
        check(text + "\n" == expected, "generate %r == run %r" % (text, expected))
        check(finish is not None and finish.completion_tokens == len(ids) == 50 and
              finish.prompt_tokens == len("Hello from Python") and
              finish.reason == inference_pb2.FINISH_REASON_MAX_TOKENS, "finish %s" % finish)

        info = channel.unary_unary(
            "/baton.v1.Inference/Info",
            request_serializer=inference_pb2.InfoRequest.SerializeToString,
            response_deserializer=inference_pb2.InfoResponse.FromString)(
                inference_pb2.InfoRequest(), timeout=10)
        check(info.model.n_layer == 2 and info.model.n_embd == 32 and len(info.stages) == 1,
              "info %s" % info)

        bad = inference_pb2.GenerateRequest(prompt="x")
        bad.sampling.top_p = 2.0
        try:
            list(generate(bad, timeout=10))
            check(False, "top_p 2 accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_p" in e.details(),
                  "bad request: %s %s" % (e.code(), e.details()))
        try:
            channel.unary_stream("/grpc.health.v1.Health/Watch",
                                 request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                 response_deserializer=health_pb2.HealthCheckResponse.FromString)(
                health_pb2.HealthCheckRequest(), timeout=10).next()
            check(False, "Watch answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNIMPLEMENTED, "Watch: %s" % e.code())
        channel.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            rc = -1
        check(rc == 0, "serve exit code %s" % rc)
        os.remove(model)
    print("python grpcio client: %s" % ("ok" if failures == 0 else "%d failure(s)" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
