import ArgumentParser
import Logging
import SSEKeepalive

#if canImport(Glibc)
import Glibc
#endif

@main
struct SSEKeepaliveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sse-keepalive",
        abstract: "A reverse-proxy sidecar that keeps Server-Sent Events streams alive.",
        version: SSEKeepaliveVersion.string,
        subcommands: [Run.self, Check.self, Probe.self],
        defaultSubcommand: Run.self
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Config file (default: \(ConfigLoader.defaultPath) if it exists, else built-in defaults).")
    var config: String?

    func load() throws -> Config {
        do {
            return try ConfigLoader.load(path: config)
        } catch {
            FileHandleStderr.write("sse-keepalive: \(error)\n")
            throw ExitCode(1)
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy (the default).")

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "Log level: \(LogLevelName.allCases.map(\.rawValue).joined(separator: "|")).")
    var logLevel: String?

    @Flag(name: .long, help: "Reload when the config file changes, as on SIGHUP (also: reload.watch in the file).")
    var watch = false

    func run() throws {
        var config = try options.load()
        var override: LogLevelName?
        if let logLevel {
            guard let level = LogLevelName(rawValue: logLevel) else {
                FileHandleStderr.write("sse-keepalive: --log-level: unknown level \"\(logLevel)\" (use \(LogLevelName.allCases.map(\.rawValue).joined(separator: "|")))\n")
                throw ExitCode(1)
            }
            config.logLevel = level
            override = level
        }
        let level = config.logLevel.swiftLogLevel
        LineLogHandler.bootstrap(level: level, format: config.logFormat)
        // Log lines go through a background writer; drain it on every way out.
        defer { LogSink.shared.flush() }
        let logger = Logger(label: "sse-keepalive")
        do {
            let server = try Server(config: config, configPath: options.config, logLevelOverride: override,
                                    watch: watch, logger: logger)
            let status = server.run()
            throw ExitCode(status)
        } catch let error as ServerError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate the config and print the effective config; exit 0 or 1.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let config = try options.load()
        print(config.rendered(), terminator: "")
    }
}

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to an event stream like a browser's EventSource and report what the path does to it.",
        discussion: """
            Reports the response head, a timeline of events and comments, idle timeouts, \
            buffering, compression and intermediaries on the path, and the heartbeat interval to \
            configure. Exit status 0 when the stream stayed healthy for the whole --duration, \
            1 otherwise. http:// and https:// (system CA store unless --cacert or --insecure).
            """
    )

    @Argument(help: "The stream's http:// or https:// URL.")
    var url: String

    @Option(name: .long, help: "https: trust the CA certificates in this PEM file instead of the system store.")
    var cacert: String?

    @Flag(name: .long, help: "https: do not check the server's certificate.")
    var insecure = false

    @Option(name: .customLong("connect-to"), help: "HOST:PORT:ADDR:PORT: connect to ADDR:PORT for HOST:PORT, as curl does (repeatable).")
    var connectTo: [String] = []

    @Option(name: .customLong("header"), help: "Extra request header Name:value (repeatable).")
    var headers: [String] = []

    @Option(name: .long, help: "How long to watch the stream: 500ms, 15s, 2m, 1h.")
    var duration: String = ProbeOptions.defaultDuration

    @Option(name: .customLong("last-event-id"), help: "Send Last-Event-ID, as a reconnecting EventSource does.")
    var lastEventID: String?

    @Flag(name: .customLong("through-sidecar"),
          help: "The URL is a sidecar's diagnostic route: ask for the silences that fit in --duration.")
    var throughSidecar = false

    @Flag(name: .long, help: "Print one JSON object instead of the text report.")
    var json = false

    @Flag(name: .long, help: "No progress line on stderr.")
    var quiet = false

    func run() throws {
        let options: ProbeOptions
        do {
            options = try ProbeOptions.parse(url: url, headers: headers, duration: duration, lastEventID: lastEventID,
                                             cacert: cacert, insecure: insecure, connectTo: connectTo,
                                             throughSidecar: throughSidecar)
        } catch {
            FileHandleStderr.write("sse-keepalive probe: \(error)\n")
            throw ExitCode(1)
        }
        throw ExitCode(ProbeMain.run(options, json: json, quiet: quiet))
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
