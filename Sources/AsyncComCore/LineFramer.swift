/// Finds LF-terminated lines in place in a buffer (a CR before the LF is dropped), without copying.
public enum LineFramer {
    public enum Next {
        /// A complete line without its terminator; `consumed` counts the terminator too.
        case line(UnsafeRawBufferPointer, consumed: Int)
        /// No LF yet and fewer than `maxLine` bytes buffered.
        case incomplete
        /// No LF within `maxLine` bytes.
        case tooLong
    }

    /// Looks for the next line at the start of `bytes`. `maxLine` counts the terminator.
    public static func next(in bytes: UnsafeRawBufferPointer, maxLine: Int) -> Next {
        fatalError("contract stub: implemented by the core work")
    }
}
