"""The fingerprint store: one ``<camera>.npz`` of arrays plus one ``<camera>.json`` of metadata per camera
(:mod:`.fingerprint`: the file format, saving and the checks of one file), and a folder of them loaded and
checked against its manifest (:mod:`.loading`)."""
from camid_gpu.store.fingerprint import (
    FORMAT,
    METHODS,
    READABLE_VERSIONS,
    VERSION,
    CameraFingerprint,
    check_arrays,
    check_camera_name,
    check_geometry,
    check_params,
    load_fingerprint,
    save_fingerprint,
    software_versions,
)
from camid_gpu.store.loading import UNVERIFIED, FingerprintStore, load_store, load_stores, verify_store

__all__ = ["FORMAT", "METHODS", "READABLE_VERSIONS", "VERSION", "CameraFingerprint", "FingerprintStore",
           "UNVERIFIED", "check_arrays", "check_camera_name", "check_geometry", "check_params", "load_fingerprint",
           "load_store", "load_stores", "save_fingerprint", "software_versions", "verify_store"]
