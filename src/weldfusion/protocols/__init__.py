"""The built-in protocols (SPEC §7), registered in `weldfusion.registry.PROTOCOLS` on import."""

from weldfusion.protocols.anomaly import AnomalyProtocol
from weldfusion.protocols.base import DefectProtocol, Scores, Threshold
from weldfusion.protocols.classify import ClassifyProtocol
from weldfusion.registry import PROTOCOLS

for _protocol in (ClassifyProtocol, AnomalyProtocol):
    PROTOCOLS.register(_protocol.name, _protocol)

__all__ = ["DefectProtocol", "Scores", "Threshold"]
