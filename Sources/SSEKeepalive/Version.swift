public enum SSEKeepaliveVersion {
    public static let string = "0.1.0"
}
