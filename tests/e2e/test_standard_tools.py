"""gRPC health and reflection are served, so standard gRPC tools work against the console."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.support.deployment import Deployment


def channel(sonde: Deployment) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(sonde.ca_file.read_bytes())
    return grpc.secure_channel(sonde.console_address, credentials)


def test_health_says_serving_without_a_token(shared_sonde: Deployment) -> None:
    with channel(shared_sonde) as open_channel:
        # The typed stubs of grpc_health lack the methods: call by path, as grpcurl would.
        check = open_channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        for service in ("", "sonde.v1.ConsoleService"):
            reply = check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_sondes_services(shared_sonde: Deployment) -> None:
    with channel(shared_sonde) as open_channel:
        info = open_channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(info(iter([request]), timeout=5))
    names = {service.name for service in reply.list_services_response.service}
    assert {"sonde.v1.ConsoleService", "sonde.v1.EnrollmentService"} <= names
