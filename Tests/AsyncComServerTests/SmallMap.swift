/// A small map used by most tests: `fast` answers at once, `slow` after 0.3 s, `slower` after 0.5 s,
/// `long` after 5 s.
let smallMap = """
    # test map
    10.0.0.1:fast:7:0
    10.0.0.1:slow:30:0.3
    10.0.0.1:slower:50:0.5
    10.0.0.1:long:-5:5
    10.0.0.2:fast:-1:0
    ::1:fast:61:0
    10.0.0.3:second:3:1
    """
