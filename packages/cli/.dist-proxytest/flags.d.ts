/** One flag: its type, default, help text and validation live in one row. */
export interface FlagSpec<T = unknown> {
    type: 'string' | 'boolean';
    short?: string;
    default?: T;
    help: string;
    /** Parses and validates the raw value; throws a message naming the flag. */
    parse?: (raw: string, name: string) => T;
    required?: boolean;
    multiple?: boolean;
}
export type FlagTable = Record<string, FlagSpec>;
export interface CommandSpec<F extends FlagTable = FlagTable> {
    name: string;
    summary: string;
    usage: string;
    flags: F;
    /** Positional arguments allowed (name for help), none if absent. */
    positionals?: string[];
    run: (flags: Record<string, unknown>, positionals: string[]) => Promise<number | void>;
}
export declare const int: (min: number, max?: number) => (raw: string, name: string) => number;
export declare const oneOf: <T extends string>(...values: T[]) => (raw: string, name: string) => T;
export declare const hostPort: (raw: string, name: string) => {
    host: string;
    port: number;
};
/** Parses argv for one command; unknown flags and bad values are coded errors. */
export declare function parseFlags(spec: CommandSpec, argv: string[]): {
    flags: Record<string, unknown>;
    positionals: string[];
};
export declare function helpText(spec: CommandSpec): string;
export declare const wsUrl: (raw: string, name: string) => string;
//# sourceMappingURL=flags.d.ts.map