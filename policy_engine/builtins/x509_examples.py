# ruff: noqa: E501  (key material is kept on one line per value)
"""Example inputs for the x509 built-ins' documentation and tests: a throwaway Ed25519
root and leaf (valid 2024-2124), a CSR, and a small RSA key. Never used to secure anything."""

from typing import Final

ROOT_PEM: Final = "-----BEGIN CERTIFICATE-----\nMIIBFTCByKADAgECAgEBMAUGAytlcDApMRUwEwYDVQQDDAxFeGFtcGxlIFJvb3Qx\nEDAOBgNVBAoMB0V4YW1wbGUwIBcNMjQwMTAxMDAwMDAwWhgPMjEyNDAxMDEwMDAw\nMDBaMCkxFTATBgNVBAMMDEV4YW1wbGUgUm9vdDEQMA4GA1UECgwHRXhhbXBsZTAq\nMAUGAytlcAMhACbGVDaeSpikPwnI1G8VHEjhJjD5v6mDKtpggnuGpWj/oxMwETAP\nBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAGJWw7nerqB/JkUD4GyJMt27Att2XN+h\nWIqOxZ3Lq3gIuEvIYpCdDzacgmvf/z9N+uaE4+TwiazKNJbZ8/LffwI=\n-----END CERTIFICATE-----\n"
LEAF_PEM: Final = "-----BEGIN CERTIFICATE-----\nMIIBKzCB3qADAgECAgECMAUGAytlcDApMRUwEwYDVQQDDAxFeGFtcGxlIFJvb3Qx\nEDAOBgNVBAoMB0V4YW1wbGUwIBcNMjQwMTAxMDAwMDAwWhgPMjEyNDAxMDEwMDAw\nMDBaMDAxHDAaBgNVBAMME2dhdGV3YXkuZXhhbXBsZS5jb20xEDAOBgNVBAoMB0V4\nYW1wbGUwKjAFBgMrZXADIQBteckCYN+g/w7UqfQ3tC9P8BCoFw7hQ/vFvxUUEcen\nAKMiMCAwHgYDVR0RBBcwFYITZ2F0ZXdheS5leGFtcGxlLmNvbTAFBgMrZXADQQDR\ns6aatzO1pdO+h5EEE+PkNZUi4qkyqd1x4cAgy22JCrFKMSZ9/slWfexe/xK6e4ZZ\nVoIScx4lWdL2gkRPCXwP\n-----END CERTIFICATE-----\n"
CSR_PEM: Final = "-----BEGIN CERTIFICATE REQUEST-----\nMIGvMGMCAQAwMDEcMBoGA1UEAwwTZ2F0ZXdheS5leGFtcGxlLmNvbTEQMA4GA1UE\nCgwHRXhhbXBsZTAqMAUGAytlcAMhAG15yQJg36D/DtSp9De0L0/wEKgXDuFD+8W/\nFRQRx6cAoAAwBQYDK2VwA0EA8SE6LTaRPl4pKRUoYQsyT1IscMxY9OfySyOa4jTZ\nq16tsTcRet42YBZG6101LzEhhDv2fL79nQE7IprfyGWrCQ==\n-----END CERTIFICATE REQUEST-----\n"
ED25519_KEY_PEM: Final = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILLN3E9qBScu2gcXX+uoZGq4ImBPOcFxxAKjYMJT94CV\n-----END PRIVATE KEY-----\n"
RSA_KEY_PEM: Final = "-----BEGIN RSA PRIVATE KEY-----\nMIICWwIBAAKBgQC9acSv73Zj635tVNmSzrGKkBMG/v3JySfApCmgZWUsb1tHwQZ6\nuS3kPm7W5w9m8DbMPD2kDBXxb7JsDYtkCDvcUpmsc3LesWKUa6R/m1k0wGu2aZrI\nv5MMbbHeeyatCBruqC5csflMA2SzM2gtgFXRRAUf4xJBHJrfT50BdmjNgQIDAQAB\nAoGAenlRfJFR8/npnbgnlw2fLwFJzFREtZ0j3yRG5jep27mFRDhDgEcMrXDRKpPt\nGZppVFX/ZXuLFLosnEGFyACq8wZbfTbZ5kyjApLh4YhVoA5pfkbG5Q5z9OFNXTQ3\nVHCxeUZyRIZ9DpgMHwdqRzpSxK4xC3wwy4V4OJXQOIa52YECQQDkxl4L31SGOhbF\nn21ivxSZAMCGFEn7ft2XRS6TlDtU9b2VXS8V3Km/nuPHjJj6+rCzmmAw+Rffs+K6\nl59dqSYtAkEA0/Q+x7VjLPyc1Wdk/ubrHMapPKldoMrY7L02cZKui9FgfCdIbY+s\n0WjIMusBYQAUt7jvdjFHdEPWwI+RB94NJQJACerTft5CksMH469ClapE4VEYB3fv\nsRhR0NHt7/XYEJnKiyQL+32iWi0wIKFmrFKbwF1r2BOkRk1NAdu6y9ueTQJAdvKM\nRPFzneyKa2ziDfcznOuUUFnQFIuiH4G0SxqBYC/5kNNO30WRO9gs+f5OwMwV1GEx\n6ceQDRyBKYGoZ5zjDQJADyARyFze4hdcp2AvlpeoyssRpfZisx98XqnUrwXCbP4P\nX1wkOgkBn0Z7VMNIh+ycaORu3AppmZV+DcCCq1zo1Q==\n-----END RSA PRIVATE KEY-----\n"

# Public JWKs (private parts dropped) for the verify_* examples.
RSA_PUBLIC_JWK: Final = '{"kty":"RSA","n":"5CcWGEcj090JDH6u_XNeAAzj4Fd7LsZqa2VoCR5Wuayotqixu9pV49aQ0QtLzhTULlAQffJl7N0412ZXXllEsOnN1-5cpjgF5fZwoIOkx5mXd0T8eWEd62fAj_WogUBup1L6ie3j2w8Uv-JVRH_oMQRS9TiROm0CsLxedJK5yg0","e":"AQAB"}'
EC_PUBLIC_JWK: Final = '{"kty":"EC","crv":"P-256","x":"XewnZMiOYhPdMjuZveqzJivjEJm_nQfAGluvBoJ6bZ0","y":"Kiuz1uPuJ-z2QXhwZnHF05vWpQ5L3py-RUXHvIfUHwo"}'


def b64(pem: str) -> str:
    """The PEM text in base64 (a single line, as OPA also accepts), for a call's example."""
    import base64

    return base64.b64encode(pem.encode()).decode()
