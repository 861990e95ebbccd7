/// The release of this package: `--version` of the three executables, the server's HELLO (`server=asynccom/<version>`)
/// and its `/metrics` build info all say this one string.
public enum AsyncComVersion {
    public static let string = "1.0.0"
}
