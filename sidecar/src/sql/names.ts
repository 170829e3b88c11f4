// Table names as the classifier renders them (classify.ts: quoted when not plain lower-case).

/** A rendered table name (`s.t`, `"Odd"`, `db.s.t`) back into its schema and name. */
export function splitQualified(rendered: string): { schema?: string; name: string } {
  const parts: string[] = [];
  let i = 0;
  while (i < rendered.length) {
    if (rendered[i] === '"') {
      let j = i + 1;
      let part = "";
      while (j < rendered.length) {
        if (rendered[j] === '"') {
          if (rendered[j + 1] === '"') {
            part += '"';
            j += 2;
            continue;
          }
          break;
        }
        part += rendered[j];
        j++;
      }
      parts.push(part);
      i = j + 2; // closing quote and the dot
    } else {
      const dot = rendered.indexOf(".", i);
      const end = dot < 0 ? rendered.length : dot;
      parts.push(rendered.slice(i, end));
      i = end + 1;
    }
  }
  const name = parts[parts.length - 1] ?? "";
  const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
  return schema === undefined ? { name } : { schema, name };
}
