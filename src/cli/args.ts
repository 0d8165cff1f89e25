/** Shared argument parsing: strict (unknown options are errors) with generated help. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LongLoraError } from '../errors.js';
import { closestNames, editDistance } from '../util/text.js';

/** A mistake in how a command was typed (exit status 2, as for an unknown command). */
export class UsageError extends LongLoraError {
  override name = 'UsageError';
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  default?: string | boolean;
  help: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function helpText(usage: string, options: Record<string, OptionSpec>): string {
  const rows = Object.entries(options).map(([k, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${k}${o.type === 'string' ? ' <value>' : ''}`;
    const dflt = o.default !== undefined && o.default !== false ? ` (default: ${String(o.default)})` : '';
    return `  ${flag.padEnd(28)} ${o.help}${dflt}`;
  });
  return [`usage: ${usage}`, '', 'options:', ...rows, '  -h, --help                   show this help'].join('\n');
}

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs in strict mode, with its errors rewritten for `command` (e.g.
 * `longlora merge`): an unknown option names the nearest real one, a value that starts
 * with a dash says how to pass it, a stray argument says the command takes none; each
 * ends with where the options are listed.
 */
export function parseStrict(argv: string[], options: OptionsConfig, command: string, allowPositionals = false, usage?: string): { values: Record<string, unknown>; positionals: string[] } {
  let r;
  try {
    r = parseArgs({ args: argv, options, strict: true, allowPositionals, tokens: true });
  } catch (e) {
    throw usageError(e, argv, options, command, usage);
  }
  repeatedOption(r.tokens, options, command);
  return { values: r.values, positionals: r.positionals };
}

/**
 * Refuses an option that takes one value given twice with different values (parseArgs keeps
 * the last silently: `--prompt a --prompt b` would generate from b alone). The same value
 * twice, or a switch twice, is harmless and passes.
 */
function repeatedOption(tokens: ReturnType<typeof parseArgs>['tokens'], options: OptionsConfig, command: string): void {
  const seen = new Map<string, string | undefined>();
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || options[t.name]?.multiple || options[t.name]?.type !== 'string') continue;
    if (seen.has(t.name) && seen.get(t.name) !== t.value) {
      throw new UsageError(`--${t.name} was given twice ('${seen.get(t.name)}' and '${t.value}'); it takes one value, so give it once (\`${command} --help\` lists the options)`);
    }
    seen.set(t.name, t.value);
  }
}

function usageError(e: unknown, argv: string[], options: OptionsConfig, command: string, usage?: string): unknown {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return e;
  const message = (e as Error).message;
  const help = `(\`${command} --help\` lists the options)`;
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) {
    const given = unknown[1]!;
    if (/^--backend(=|$)/.test(given)) return new UsageError(`${command} does not choose a compute backend: it takes no --backend or --device ${help}`);
    const near = nearestOptions(given.replace(/^-+/, '').split('=')[0]!, Object.keys(options));
    return new UsageError(`unknown option '${given}' for ${command}${near.length ? `; did you mean ${near.map((n) => `--${n}`).join(' or ')}?` : ''} ${help}`);
  }
  const option = /^Option '(-{1,2}[^' ]+)/.exec(message)?.[1];
  if (option && message.includes('argument is ambiguous')) {
    const next = argv[argv.indexOf(option) + 1] ?? '';
    return new UsageError(`${option} needs a value, and the next argument '${next}' starts with '-'; if that is the value, write ${option}=${next} ${help}`);
  }
  if (option && message.includes('argument missing')) return new UsageError(`${option} needs a value ${help}`);
  if (option && message.includes('does not take an argument')) {
    const off = `no-${option.replace(/^-+/, '')}`;
    return new UsageError(`${option} is a switch and takes no value: write ${option} alone${off in options ? ` to turn it on, --${off} to turn it off` : ''} ${help}`);
  }
  const stray = /^Unexpected argument '([^']*)'/.exec(message);
  if (stray) return new UsageError(`unexpected argument '${stray[1]}': ${command} takes every input as an option${usage ? `\nusage: ${usage}` : ''}\n${help}`);
  return new UsageError(`${message} ${help}`);
}

/**
 * The options meant by a mistyped name: those that are a prefix of it or it of them (--temp
 * for --temperature or --template, --output for --out), else those whose words include all
 * of the name's (--max-tokens for --max-new-tokens), else a near spelling; none when
 * nothing is close.
 */
export function nearestOptions(name: string, names: string[]): string[] {
  if (name.length < 3) return [];
  const prefix = names.filter((n) => n.length >= 3 && (n.startsWith(name) || name.startsWith(n)));
  if (prefix.length) return prefix.slice(0, 3);
  const words = name.split('-').filter((w) => w !== '');
  const covering = words.length > 1 ? names.filter((n) => words.every((w) => n.split('-').includes(w))) : [];
  if (covering.length) return covering.slice(0, 3);
  const near = closestNames(name, names, 1)[0];
  return near !== undefined && editDistance(name, near) <= Math.max(2, Math.floor(name.length / 3)) ? [near] : [];
}

/** The command a usage line is for: `longlora eval ppl --model …` → `longlora eval ppl`. */
export function commandOf(usage: string): string {
  const words = usage.split(/\s+/);
  const end = words.findIndex((w) => !/^[a-z]+$/.test(w));
  return (end < 0 ? words : words.slice(0, end)).join(' ');
}

/** Parses argv; prints help and returns null for --help. */
export function parse(argv: string[], usage: string, options: Record<string, OptionSpec>, allowPositionals = false): ParsedArgs | null {
  const spec: Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [k, o] of Object.entries(options)) {
    spec[k] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.default !== undefined ? { default: o.default } : {}) };
  }
  const { values, positionals } = parseStrict(argv, spec, commandOf(usage), allowPositionals, usage);
  if (values.help) {
    console.log(helpText(usage, options));
    return null;
  }
  return { values: values as ParsedArgs['values'], positionals };
}
