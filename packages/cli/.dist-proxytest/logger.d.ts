/** Minimal leveled logger for the CLI: human lines on stderr (JSON when FTVM_LOG_FORMAT=json). */
export type Level = 'error' | 'warn' | 'info' | 'debug';
export declare class Logger {
    readonly role: string;
    private level;
    private json;
    constructor(role: string, level?: Level, json?: boolean);
    setLevel(l: Level): void;
    log(level: Level, msg: string, fields?: Record<string, unknown>): void;
    error(m: string, f?: Record<string, unknown>): void;
    warn(m: string, f?: Record<string, unknown>): void;
    info(m: string, f?: Record<string, unknown>): void;
    debug(m: string, f?: Record<string, unknown>): void;
}
export declare const GUEST_LOG_LEVELS: Level[];
//# sourceMappingURL=logger.d.ts.map