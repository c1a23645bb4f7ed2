import { WeightsError } from '../../errors.js';

/**
 * A function the *reader* supplies for one allow-listed Python global. Pickles name callables and ask for them
 * to be called (REDUCE, NEWOBJ); only these JavaScript stand-ins ever run, never anything from the file.
 */
export class PyCallable {
  constructor(readonly qualname: string, private readonly fn: (args: unknown[]) => unknown) {}
  call(args: unknown[]): unknown {
    return this.fn(args);
  }
}

export interface UnpickleOptions {
  /** Human name of the data, for messages. */
  source: string;
  /** Allow-listed globals by "module.name"; anything else is refused. */
  globals: ReadonlyMap<string, unknown>;
  /** Resolves persistent ids (torch's storages). Without it, a persistent id is an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Where to start reading (several pickles may follow each other, as in torch's legacy format). */
  offset?: number;
}

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode. */
  end: number;
}

/** Raised for a global outside the allow-list; carries the name so messages and tests can show it. */
export class RefusedGlobalError extends WeightsError {
  constructor(source: string, readonly qualname: string) {
    super(
      `${source}: refusing to load: checkpoint references ${qualname}, which is not part of a plain state dict ` +
      '(nothing in a checkpoint is ever run; save model.state_dict() or convert to safetensors)',
    );
  }
}

const MARK = Symbol('mark');

/**
 * What a pickle may hold, far beyond any checkpoint: a state dict's pickle names a few thousand tensors with
 * tuples of small integers, so these only ever stop hostile files, before the memory or time they ask for.
 */
export const PICKLE_LIMITS = {
  /**
   * Bytes of a LONG1 / LONG4 integer (256 bits). Shapes, strides, offsets and sizes fit 8 bytes, torch's
   * legacy magic number takes 10; Python reads a 1 MiB integer instantly, but nothing here needs one.
   */
  intBytes: 32,
  /** Characters of a text INT / LONG (protocol 0): the same 256 bits written in decimal, and a sign. */
  intDigits: 80,
  /** Bytes of one string or bytes object: tensor names and metadata are short. */
  stringBytes: 16 * 2 ** 20,
  /** Values pushed or added to a container in all (each costs memory: a DUP is one pointer, but 64 M of them are 512 MB). */
  values: 2_000_000,
} as const;

/** Python ints beyond 2^53 stay exact as bigint; everything smaller becomes a number. */
function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Two's-complement little-endian integer (LONG1 / LONG4), at most PICKLE_LIMITS.intBytes long, so the
 * bigint arithmetic (quadratic in the length) stays a few operations.
 */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return narrow(v);
}

/** Python's raw-unicode-escape: only \uXXXX and \UXXXXXXXX are escapes. */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u4, u8) => String.fromCodePoint(parseInt(u4 ?? u8, 16)));
}

/**
 * A restricted unpickler for protocols 0–5 as far as plain data needs them: numbers, strings, bytes, None and
 * booleans, tuples, lists, dicts and sets, the memo, and calls of allow-listed globals. It has no notion of
 * Python objects beyond that: GLOBAL / STACK_GLOBAL / INST of any other name is refused with the name, and
 * the extension registry and out-of-band buffers are refused outright. Every length is checked against the
 * input before anything is allocated, and against PICKLE_LIMITS, so time and memory stay linear in the input
 * and bounded whatever it holds.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): UnpickleResult {
  const { source, globals } = opts;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8');
  let pos = opts.offset ?? 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let values = 0;

  const fail = (msg: string): never => {
    throw new WeightsError(`${source}: bad pickle at byte ${pos}: ${msg}`);
  };
  const take = (n: number): Uint8Array => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length) fail(`a ${n}-byte field runs past the end of the data`);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const u8 = () => take(1)[0];
  const u16 = () => { const b = take(2); return b[0] | (b[1] << 8); };
  const u32 = () => { take(4); return view.getUint32(pos - 4, true); };
  const i32 = () => { take(4); return view.getInt32(pos - 4, true); };
  const u64 = () => {
    take(8);
    const v = view.getBigUint64(pos - 8, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? fail(`length ${v} is too large`) : Number(v);
  };
  const text = (n: number): Uint8Array => {
    const b = take(n);
    if (b.length > PICKLE_LIMITS.stringBytes) fail(`a ${b.length}-byte string is longer than any checkpoint needs (limit ${PICKLE_LIMITS.stringBytes})`);
    return b;
  };
  const long = (n: number): number | bigint => {
    const b = take(n);
    if (b.length > PICKLE_LIMITS.intBytes) fail(`a ${b.length}-byte integer is wider than any shape or offset (limit ${PICKLE_LIMITS.intBytes} bytes)`);
    return decodeLong(b);
  };
  const digits = (s: string, what: string): number | bigint => {
    if (s.length > PICKLE_LIMITS.intDigits) fail(`a ${s.length}-digit ${what} is wider than any shape or offset (limit ${PICKLE_LIMITS.intDigits})`);
    return /^[-+]?\d+$/.test(s) ? narrow(BigInt(s)) : fail(`bad ${what} "${s.slice(0, 40)}"`);
  };
  const count = (n: number): void => {
    values += n;
    if (values > PICKLE_LIMITS.values) fail(`more than ${PICKLE_LIMITS.values} values: far more than a state dict holds`);
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail('unterminated text field');
    if (nl - pos > PICKLE_LIMITS.stringBytes) fail(`a ${nl - pos}-byte text field is longer than any checkpoint needs`);
    const s = latin1.decode(data.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  // Arguments are evaluated before the body reads `stack`, so push(f(popMark())) lands on the restored stack.
  const push = (v: unknown): void => {
    count(1);
    stack.push(v);
  };
  const pop = (): unknown => (stack.length === 0 ? fail('stack underflow') : stack.pop());
  const top = (): unknown => (stack.length === 0 ? fail('stack underflow') : stack[stack.length - 1]);
  const popMark = (): unknown[] => {
    const items = stack;
    if (metastack.length === 0) fail('no MARK on the stack');
    stack = metastack.pop()!;
    return items;
  };
  const memoPut = (i: number): void => {
    count(1);
    memo.set(i, top());
  };
  const memoGet = (i: number): unknown => (memo.has(i) ? memo.get(i) : fail(`memo entry ${i} was never stored`));
  const findGlobal = (module: string, name: string): unknown => {
    const q = `${module}.${name}`;
    if (!globals.has(q)) throw new RefusedGlobalError(source, q);
    return globals.get(q);
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof PyCallable)) fail(`cannot call ${describe(fn)}`);
    if (!Array.isArray(args)) fail('call arguments are not a tuple');
    return (fn as PyCallable).call(args as unknown[]);
  };
  const asMap = (d: unknown): Map<unknown, unknown> => (d instanceof Map ? d : fail(`SETITEM on ${describe(d)}`));
  const asList = (l: unknown): unknown[] => (Array.isArray(l) && !Object.isFrozen(l) ? l : fail(`APPEND on ${describe(l)}`));
  const asSet = (s: unknown): Set<unknown> => (s instanceof Set ? s : fail(`ADDITEMS on ${describe(s)}`));
  const tuple = (items: unknown[]): unknown[] => Object.freeze(items) as unknown[];
  const setItems = (d: Map<unknown, unknown>, items: unknown[]) => {
    if (items.length % 2 !== 0) fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol newer than 5');
        break;
      case 0x95: // FRAME: framing only groups opcodes; the data is read straight through.
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        count(1);
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length > 0) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      // ---- numbers
      case 0x49: { // INT (text; protocol 0 spells booleans I01 / I00)
        const s = line();
        push(s === '01' ? true : s === '00' ? false : digits(s, 'INT'));
        break;
      }
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x4c: { // LONG (text)
        push(digits(line().replace(/L$/, ''), 'LONG'));
        break;
      }
      case 0x8a: push(long(u8())); break; // LONG1
      case 0x8b: push(long(i32())); break; // LONG4
      case 0x46: { // FLOAT (text)
        const v = Number(line());
        push(Number.isNaN(v) ? fail('bad FLOAT') : v);
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        take(8);
        push(view.getFloat64(pos - 8, false));
        break;
      // ---- singletons
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      // ---- strings and bytes
      case 0x58: push(utf8.decode(text(u32()))); break; // BINUNICODE
      case 0x8c: push(utf8.decode(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(utf8.decode(text(u64()))); break; // BINUNICODE8
      case 0x56: push(rawUnicodeEscape(line())); break; // UNICODE (text)
      // Python 2 str: bytes that were text; latin1 keeps every byte.
      case 0x54: push(latin1.decode(text(i32()))); break; // BINSTRING
      case 0x55: push(latin1.decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: push(text(u32()).slice()); break; // BINBYTES
      case 0x43: push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(text(u64()).slice());
        break;
      // ---- containers
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: push(tuple([pop()])); break; // TUPLE1
      case 0x86: { // TUPLE2
        const b = pop();
        push(tuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        push(tuple([pop(), b, c]));
        break;
      }
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x6c: push(popMark()); break; // LIST
      case 0x61: { // APPEND
        const v = pop();
        asList(top()).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = asList(top());
        for (const it of items) list.push(it);
        break;
      }
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        asMap(top()).set(k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(asMap(top()), items);
        break;
      }
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = asSet(top());
        for (const it of items) s.add(it);
        break;
      }
      case 0x91: push(new Set(popMark())); break; // FROZENSET
      // ---- memo
      case 0x70: memoPut(Number(line())); break; // PUT (text)
      case 0x71: memoPut(u8()); break; // BINPUT
      case 0x72: memoPut(u32()); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x67: push(memoGet(Number(line()))); break; // GET (text)
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET
      // ---- globals and calls: only the allow-list resolves, only our stand-ins run
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        push(findGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(findGlobal(module as string, name as string));
        break;
      }
      case 0x69: { // INST "module\nname\n" with arguments since MARK
        const module = line();
        const cls = findGlobal(module, line());
        push(call(cls, popMark()));
        break;
      }
      case 0x6f: { // OBJ: class and arguments since MARK
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        push(call(items[0], items.slice(1)));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) fail('keyword arguments to a constructor');
        push(call(pop(), args));
        break;
      }
      case 0x62: { // BUILD
        // The state is dropped: an OrderedDict's instance state (torch keeps `_metadata` there, module
        // versions) carries no weights, and nothing else may receive state.
        pop();
        if (!(top() instanceof Map)) fail(`cannot set state on ${describe(top())}`);
        break;
      }
      case 0x50: { // PERSID (text)
        const pid = line();
        push(opts.persistentLoad ? opts.persistentLoad(pid) : fail('persistent id without a loader'));
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        push(opts.persistentLoad ? opts.persistentLoad(pid) : fail('persistent id without a loader'));
        break;
      }
      case 0x82: case 0x83: case 0x84: // EXT1, EXT2, EXT4: the copyreg extension registry names globals too
        fail('extension-registry references (EXT1/2/4) are not allowed');
        break;
      case 0x97: case 0x98: // NEXT_BUFFER, READONLY_BUFFER
        fail('out-of-band buffers are not supported');
        break;
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** A short description of a pickled value for error messages. */
export function describe(v: unknown): string {
  if (v instanceof PyCallable) return v.qualname;
  if (v === null) return 'None';
  if (Array.isArray(v)) return Object.isFrozen(v) ? `a ${v.length}-tuple` : `a list of ${v.length}`;
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return `${typeof v} ${String(v).slice(0, 40)}`;
}
