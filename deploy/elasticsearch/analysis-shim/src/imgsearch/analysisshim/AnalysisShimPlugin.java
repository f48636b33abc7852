/*
 * Test-only stand-in for three analysis components of Elasticsearch's analysis-common module, which
 * the minimal integ-test distribution lacks and which the .security index's `email` analyzer needs:
 * tokenizer uax_url_email, token filters pattern_capture and unique (lowercase is built into the
 * server). Only the local security-test node of scripts/stack.sh loads it; see README.md next to src/.
 */
package imgsearch.analysisshim;

import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

// The factories implement the TokenizerFactory / TokenFilterFactory interfaces directly: their abstract
// methods (name, create) are the same on 8.19 and 9.x, while the Abstract*Factory base classes'
// constructors differ between the majors, so one source compiles against both distributions.
public final class AnalysisShimPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", UaxUrlEmailTokenizerFactory::new);
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture", AnalysisPlugin.requiresAnalysisSettings(
                (indexSettings, environment, name, settings) -> new PatternCaptureFactory(name, settings)),
            "unique", (indexSettings, environment, name, settings) -> new UniqueFactory(name, settings));
    }

    /** `uax_url_email`: Lucene's UAX#29 tokenizer that keeps URLs and e-mail addresses whole. */
    static final class UaxUrlEmailTokenizerFactory implements TokenizerFactory {
        private final String name;
        private final int maxTokenLength;

        UaxUrlEmailTokenizerFactory(IndexSettings indexSettings, org.elasticsearch.env.Environment environment,
                                    String name, Settings settings) {
            this.name = name;
            maxTokenLength = settings.getAsInt("max_token_length", StandardAnalyzer.DEFAULT_MAX_TOKEN_LENGTH);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public Tokenizer create() {
            UAX29URLEmailTokenizer tokenizer = new UAX29URLEmailTokenizer();
            tokenizer.setMaxTokenLength(maxTokenLength);
            return tokenizer;
        }
    }

    /** `pattern_capture`: emits every capture group of each pattern (and the original token). */
    static final class PatternCaptureFactory implements TokenFilterFactory {
        private final String name;
        private final Pattern[] patterns;
        private final boolean preserveOriginal;

        PatternCaptureFactory(String name, Settings settings) {
            this.name = name;
            List<String> regexes = settings.getAsList("patterns", List.of(), false);
            if (regexes.isEmpty()) {
                throw new IllegalArgumentException("required setting 'patterns' is missing for token filter [" + name + "]");
            }
            patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
            preserveOriginal = settings.getAsBoolean("preserve_original", true);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public TokenStream create(TokenStream input) {
            return new PatternCaptureGroupTokenFilter(input, preserveOriginal, patterns);
        }
    }

    /** `unique`: drops a token whose term was already seen in the stream (or, with
     *  only_on_same_position, at the same position). */
    static final class UniqueFactory implements TokenFilterFactory {
        private final String name;
        private final boolean onlyOnSamePosition;

        UniqueFactory(String name, Settings settings) {
            this.name = name;
            onlyOnSamePosition = settings.getAsBoolean("only_on_same_position", false);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public TokenStream create(TokenStream input) {
            return new UniqueFilter(input, onlyOnSamePosition);
        }
    }

    static final class UniqueFilter extends TokenFilter {
        private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
        private final PositionIncrementAttribute positionIncrement = addAttribute(PositionIncrementAttribute.class);
        private final CharArraySet seen = new CharArraySet(8, false);
        private final boolean onlyOnSamePosition;

        UniqueFilter(TokenStream input, boolean onlyOnSamePosition) {
            super(input);
            this.onlyOnSamePosition = onlyOnSamePosition;
        }

        @Override
        public boolean incrementToken() throws java.io.IOException {
            while (input.incrementToken()) {
                if (onlyOnSamePosition && positionIncrement.getPositionIncrement() > 0) {
                    seen.clear();
                }
                // add() stores a copy of the term and answers false when it was already there.
                if (seen.add(term.toString())) {
                    return true;
                }
            }
            return false;
        }

        @Override
        public void reset() throws java.io.IOException {
            super.reset();
            seen.clear();
        }
    }
}
