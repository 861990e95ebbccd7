// A program that embeds a server gets what `ServerConfiguration` needs as well: `DeviceMap`, `Endpoint`
// (AsyncComCore), without depending on a second product.
@_exported import AsyncComCore
