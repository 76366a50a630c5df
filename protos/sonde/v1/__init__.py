"""Sonde's wire contract, package sonde.v1 (generated code beside the .proto files)."""
