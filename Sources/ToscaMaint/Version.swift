/// This build's version, recorded in manifests.
public let toscaMaintVersion = "0.1.0"
