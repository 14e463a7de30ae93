// render.mjs — renders each conversation of a JSON file with @huggingface/jinja from the
// chat_template of a tokenizer_config.json (or a template file), one JSON string per line.
// usage: node render.mjs TEMPLATE_FILE CONVERSATIONS.json
import { Template } from "@huggingface/jinja";
import { readFileSync } from "node:fs";

const [templatePath, convPath] = process.argv.slice(2);
let source = readFileSync(templatePath, "utf8");
if (templatePath.endsWith(".json")) source = JSON.parse(source).chat_template;
const template = new Template(source);
for (const c of JSON.parse(readFileSync(convPath, "utf8"))) {
  try {
    const vars = { messages: c.messages, bos_token: "<longcat_s>", eos_token: "</longcat_s>", add_generation_prompt: true };
    if (c.tools) vars.tools = c.tools;
    console.log(JSON.stringify(template.render(vars)));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
  }
}
