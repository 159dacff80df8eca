/** PAX extended-header records for hand-made tar archives in tests. */

const encoder = new TextEncoder();

/** `records` as a PAX body (`LEN key=value\n` each), padded to whole blocks, and its size. */
export function paxRecords(records: [string, string][]): { body: Uint8Array; size: number } {
  const text = encoder.encode(
    records.map(([k, v]) => {
      const line = ` ${k}=${v}\n`;
      let length = line.length + 1;
      while (`${length}${line}`.length !== length) length++;
      return `${length}${line}`;
    }).join(""),
  );
  const body = new Uint8Array(Math.ceil(text.length / 512) * 512);
  body.set(text);
  return { body, size: text.length };
}
