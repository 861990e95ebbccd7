// A program that imports AsyncComClient gets what its API speaks in as well: `Endpoint`, `CommandEntry`,
// `InputFileError`, `DeviceAddress` (AsyncComCore), without depending on a second product.
@_exported import AsyncComCore
