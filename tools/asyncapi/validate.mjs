// Parses and validates an AsyncAPI document, then every Avro payload in it; exits 1 on any error.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';
import { AvroSchemaParser } from '@asyncapi/avro-schema-parser';
import avro from 'avsc';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}
const text = await readFile(file, 'utf8');
const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await parser.parse(text, { source: file });
let failed = false;
// Severity 0 is an error, 1 a warning; hints and information are not shown.
for (const d of diagnostics.filter((d) => d.severity <= 1)) {
  const where = d.path && d.path.length ? d.path.join('.') : '(document)';
  console.log(`${d.severity === 0 ? 'error' : 'warning'} ${d.code} at ${where}: ${d.message}`);
  failed ||= d.severity === 0;
}
if (!document) {
  console.error(`${file}: not a valid AsyncAPI document`);
  process.exit(1);
}
// The parser turns Avro payloads into JSON Schema without checking them: avsc does.
const raw = JSON.parse(text);
for (const [name, message] of Object.entries(raw.components?.messages ?? {})) {
  const payload = message.payload ?? {};
  if (!String(payload.schemaFormat ?? '').startsWith('application/vnd.apache.avro')) {
    console.log(`error at components.messages.${name}.payload: not an Avro payload`);
    failed = true;
    continue;
  }
  try {
    avro.Type.forSchema(payload.schema);
  } catch (error) {
    console.log(`error at components.messages.${name}.payload.schema: ${error.message}`);
    failed = true;
  }
}
if (failed) {
  process.exit(1);
}
console.log(
  `${file}: valid AsyncAPI ${document.version()} (${document.allChannels().length} channels, ` +
    `${document.allMessages().length} messages, every Avro payload parses)`,
);
