/** Shared argument parsing: strict (unknown options are errors) with generated help. */
import { parseArgs } from 'node:util';

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

/** Parses argv; prints help and returns null for --help. */
export function parse(argv: string[], usage: string, options: Record<string, OptionSpec>, allowPositionals = false): ParsedArgs | null {
  const spec: Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [k, o] of Object.entries(options)) {
    spec[k] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.default !== undefined ? { default: o.default } : {}) };
  }
  const { values, positionals } = parseArgs({ args: argv, options: spec, strict: true, allowPositionals });
  if (values.help) {
    console.log(helpText(usage, options));
    return null;
  }
  return { values: values as ParsedArgs['values'], positionals };
}
